//! The `catalog-svc` command line: `serve`, `migrate` and `seed --courses N`.
use std::error::Error;

use clap::{Parser, Subcommand};
use learnhub_db::{Db, DbArgs, DbOptions, run_migrations};
use learnhub_kit::{config::LogArgs, shutdown};

use crate::{Application, Config, migrations, seed};

#[derive(Parser)]
#[command(
    name = "catalog-svc",
    version,
    about = "learnhub catalog: courses, categories, lessons, exercises (gRPC learnhub.catalog.v1)"
)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve gRPC (runs pending migrations first unless --no-migrate).
    Serve(Box<Config>),
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

/// Runs the command until it is done (`serve`: until SIGTERM or SIGINT).
pub async fn run(command: Command) -> Result<(), Box<dyn Error>> {
    match command {
        Command::Serve(config) => {
            let app = Application::build(&config).await?;
            app.run_until_stopped(shutdown::on_signal()).await?;
        }
        Command::Migrate(db) => {
            let applied = run_migrations(&db.database_url, migrations()).await?;
            println!("applied {} migration(s): {applied:?}", applied.len());
        }
        Command::Seed { db, courses } => {
            run_migrations(&db.database_url, migrations()).await?;
            let pool = Db::connect(&DbOptions {
                url: db.database_url.clone(),
                pool_size: 2,
                slow_query: db.slow_query_threshold(),
                n_plus_one_threshold: db.n_plus_one_threshold,
                application_name: "catalog-svc seed",
            })
            .await?;
            let started = std::time::Instant::now();
            let report = seed::run(&pool, courses, true).await?;
            println!("{report:?} in {:.2?}", started.elapsed());
        }
    }
    Ok(())
}
