//! catalog-svc binary: serve, migrate or seed.
use clap::{Parser, Subcommand};
use learnhub_db::{DbArgs, DbOptions, run_migrations};
use learnhub_kit::{config::LogArgs, shutdown, telemetry};

#[derive(Parser)]
#[command(
    name = "catalog-svc",
    version,
    about = "learnhub catalog: courses, categories, lessons, exercises (gRPC learnhub.catalog.v1)"
)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve gRPC (runs pending migrations first unless --no-migrate).
    Serve(catalog_svc::Config),
    /// Run pending migrations and exit (a Kubernetes Job).
    Migrate(DbArgs),
    /// Insert the deterministic demo catalog: courses 1..=N with lessons and exercises.
    Seed {
        #[command(flatten)]
        db: DbArgs,
        /// Number of courses to ensure.
        #[arg(long, default_value_t = 1_000)]
        courses: u64,
    },
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    let _telemetry = telemetry::init("catalog-svc", &cli.log.log_format);
    match cli.command {
        Command::Serve(config) => {
            let app = catalog_svc::Application::build(&config).await?;
            app.run_until_stopped(shutdown::on_signal()).await?;
        }
        Command::Migrate(db) => {
            let applied = run_migrations(&db.database_url, catalog_svc::migrations()).await?;
            println!("applied {} migration(s): {applied:?}", applied.len());
        }
        Command::Seed { db, courses } => {
            run_migrations(&db.database_url, catalog_svc::migrations()).await?;
            let pool = learnhub_db::Db::connect(&DbOptions {
                url: db.database_url.clone(),
                pool_size: 2,
                slow_query: db.slow_query_threshold(),
                n_plus_one_threshold: db.n_plus_one_threshold,
                application_name: "catalog-svc seed",
            })
            .await?;
            let started = std::time::Instant::now();
            let report = catalog_svc::seed::run(&pool, courses, true).await?;
            println!("{report:?} in {:.2?}", started.elapsed());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn verify_cli() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
