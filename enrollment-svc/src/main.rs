//! enrollment-svc binary: serve, migrate or seed.
use clap::{Parser, Subcommand};
use learnhub_db::{DbArgs, DbOptions, run_migrations};
use learnhub_kit::{config::LogArgs, shutdown, telemetry};

#[derive(Parser)]
#[command(
    name = "enrollment-svc",
    version,
    about = "learnhub enrollment: learners, enrollments, progress, submissions (gRPC learnhub.enrollment.v1)"
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
    Serve(enrollment_svc::Config),
    /// Run pending migrations and exit (a Kubernetes Job).
    Migrate(DbArgs),
    /// Bulk-load deterministic learners, enrollments, progress and submissions against the
    /// published courses of a running catalog-svc.
    Seed {
        #[command(flatten)]
        db: DbArgs,
        /// catalog-svc address (http://host:port) to read published courses and lessons from.
        #[arg(long, env = "CATALOG_ADDR")]
        catalog_addr: String,
        /// Learners to ensure (learner1@example.com ..).
        #[arg(long, default_value_t = 1_000)]
        users: u64,
        /// Enrollments in total, spread evenly over the learners.
        #[arg(long, default_value_t = 5_000)]
        enrollments: u64,
        /// Lesson progress rows in total, spread evenly over the enrollments.
        #[arg(long, default_value_t = 15_000)]
        progress: u64,
        /// Exercise submissions in total, spread evenly over the learners.
        #[arg(long, default_value_t = 2_000)]
        submissions: u64,
    },
}

const SEED_SLOW_QUERY: std::time::Duration = std::time::Duration::from_secs(5);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    let _telemetry = telemetry::init("enrollment-svc", &cli.log.log_format);
    match cli.command {
        Command::Serve(config) => {
            let app = enrollment_svc::Application::build(&config).await?;
            app.run_until_stopped(shutdown::on_signal()).await?;
        }
        Command::Migrate(db) => {
            let applied = run_migrations(&db.database_url, enrollment_svc::migrations()).await?;
            println!("applied {} migration(s): {applied:?}", applied.len());
        }
        Command::Seed {
            db,
            catalog_addr,
            users,
            enrollments,
            progress,
            submissions,
        } => {
            run_migrations(&db.database_url, enrollment_svc::migrations()).await?;
            let pool = learnhub_db::Db::connect(&DbOptions {
                url: db.database_url.clone(),
                pool_size: enrollment_svc::seed::POSTGRES_WRITERS as u32,
                // Multi-row inserts of a thousand rows are meant to be big: only log the
                // really slow ones (the log line carries the whole statement).
                slow_query: db.slow_query_threshold().max(SEED_SLOW_QUERY),
                n_plus_one_threshold: db.n_plus_one_threshold,
                application_name: "enrollment-svc seed",
            })
            .await?;
            let catalog = enrollment_svc::catalog_client::CatalogClient::connect_lazy(
                &catalog_addr,
                std::time::Duration::from_secs(30),
            )?;
            let plan = enrollment_svc::seed::Plan {
                users,
                enrollments,
                progress,
                submissions,
            };
            let started = std::time::Instant::now();
            let report = enrollment_svc::seed::run(&pool, &catalog, plan, true).await?;
            let elapsed = started.elapsed();
            println!(
                "{report:?} in {elapsed:.2?} ({:.0} rows/s)",
                report.rows() as f64 / elapsed.as_secs_f64().max(1e-9)
            );
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
