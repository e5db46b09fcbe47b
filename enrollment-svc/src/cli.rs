//! The `enrollment-svc` command line: `serve`, `migrate` or `seed`, each flag with its
//! environment fallback.
use std::{
    error::Error,
    time::{Duration, Instant},
};

use clap::{Parser, Subcommand};
use learnhub_db::{Db, DbArgs, DbOptions, run_migrations};
use learnhub_kit::{config::LogArgs, shutdown};

use crate::{Application, Config, catalog_client::CatalogClient, migrations, seed};

/// A seed's multi-row inserts of a thousand rows are meant to be big: only the really slow ones
/// are logged (the log line carries the whole statement).
const SEED_SLOW_QUERY: Duration = Duration::from_secs(5);
/// Deadline of each catalog-svc call while the seed reads the catalog.
const SEED_CATALOG_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Parser)]
#[command(
    name = "enrollment-svc",
    version,
    about = "learnhub enrollment: learners, enrollments, progress, submissions (gRPC learnhub.enrollment.v1)"
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
    /// Bulk-load deterministic learners, enrollments, progress and submissions against the
    /// published courses of a running catalog-svc.
    Seed(SeedArgs),
}

/// How much `seed` generates, and where.
#[derive(clap::Args)]
pub struct SeedArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// catalog-svc address (http://host:port) to read published courses and lessons from.
    #[arg(long, env = "CATALOG_ADDR")]
    pub catalog_addr: String,
    /// Learners to ensure (learner1@example.com ..).
    #[arg(long, default_value_t = 1_000)]
    pub users: u64,
    /// Enrollments in total, spread evenly over the learners.
    #[arg(long, default_value_t = 5_000)]
    pub enrollments: u64,
    /// Lesson progress rows in total, spread evenly over the enrollments.
    #[arg(long, default_value_t = 15_000)]
    pub progress: u64,
    /// Exercise submissions in total, spread evenly over the learners.
    #[arg(long, default_value_t = 2_000)]
    pub submissions: u64,
}

impl Command {
    /// Runs the command to its end (`serve`: until SIGTERM or SIGINT).
    pub async fn run(self) -> Result<(), Box<dyn Error>> {
        match self {
            Self::Serve(config) => {
                let app = Application::build(&config).await?;
                app.run_until_stopped(shutdown::on_signal()).await?;
            }
            Self::Migrate(db) => {
                let applied = run_migrations(&db.database_url, migrations()).await?;
                println!("applied {} migration(s): {applied:?}", applied.len());
            }
            Self::Seed(args) => args.run().await?,
        }
        Ok(())
    }
}

impl SeedArgs {
    /// Migrates, then seeds the plan and prints what was inserted and how fast.
    async fn run(self) -> Result<(), Box<dyn Error>> {
        run_migrations(&self.db.database_url, migrations()).await?;
        let db = Db::connect(&DbOptions {
            url: self.db.database_url.clone(),
            pool_size: seed::POSTGRES_WRITERS as u32,
            slow_query: self.db.slow_query_threshold().max(SEED_SLOW_QUERY),
            n_plus_one_threshold: self.db.n_plus_one_threshold,
            application_name: "enrollment-svc seed",
        })
        .await?;
        let catalog = CatalogClient::connect_lazy(&self.catalog_addr, SEED_CATALOG_TIMEOUT)?;
        let plan = seed::Plan {
            users: self.users,
            enrollments: self.enrollments,
            progress: self.progress,
            submissions: self.submissions,
        };
        let started = Instant::now();
        let report = seed::run(&db, &catalog, plan, true).await?;
        let elapsed = started.elapsed();
        println!(
            "{report:?} in {elapsed:.2?} ({:.0} rows/s)",
            report.rows() as f64 / elapsed.as_secs_f64().max(1e-9)
        );
        Ok(())
    }
}
