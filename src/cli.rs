//! The `learnhub` command line: serve the whole platform (monolithic mode) or print a token.
use std::{path::PathBuf, time::Duration};

use clap::{Parser, Subcommand};

/// The dev-only signing secret of monolithic mode; set AUTH_JWT_SECRET for anything shared.
const DEV_SECRET: &str = "learnhub-dev-secret-change-me";

#[derive(Parser)]
#[command(
    name = "learnhub",
    version,
    about = "learnhub in one process: gateway + services on embedded SQLite with demo data",
    long_about = "Runs the whole platform in one process (monolithic mode): the gateway on --listen \
                  and every service on loopback ports, storing data in SQLite files under --data-dir \
                  and seeding a demo catalog on first start. Run the services separately against \
                  Postgres and Redis for production (see README)."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Where the gateway listens (gRPC, gRPC-Web and REST on one port).
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen: String,
    /// Folder for the SQLite databases (created if missing).
    #[arg(long, env = "DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Use this Redis for the cache instead of the in-process store (e.g. redis://127.0.0.1:6379).
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// HS256 secret for caller tokens (default: a dev-only secret).
    #[arg(long, env = "AUTH_JWT_SECRET", default_value = DEV_SECRET, hide_env_values = true, hide_default_value = true)]
    pub auth_jwt_secret: String,
    /// `text` or `json` logs; filter with RUST_LOG (default info).
    #[arg(long, env = "LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

#[derive(Subcommand)]
enum Command {
    /// Print a signed token for calling the gateway (dev secret unless AUTH_JWT_SECRET is set).
    Token {
        /// An admin token (subject 0).
        #[arg(long, conflicts_with = "user")]
        admin: bool,
        /// A learner token for this user id.
        #[arg(long, required_unless_present = "admin")]
        user: Option<i64>,
        /// Validity in hours.
        #[arg(long, default_value_t = 24)]
        hours: u64,
        #[arg(long, env = "AUTH_JWT_SECRET", default_value = DEV_SECRET, hide_env_values = true, hide_default_value = true)]
        auth_jwt_secret: String,
    },
}

impl Cli {
    /// Runs the command: `token` prints a token; without one the platform serves until
    /// SIGTERM/SIGINT, or until one of its services fails (then the error names it).
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Some(Command::Token {
                admin,
                user,
                hours,
                auth_jwt_secret,
            }) => {
                println!("{}", token(admin, user, hours, &auth_jwt_secret)?);
                Ok(())
            }
            None => crate::monolith::serve(&self.serve).await,
        }
    }
}

/// An admin token (subject 0) or a learner token for `user`, valid `hours`.
fn token(admin: bool, user: Option<i64>, hours: u64, secret: &str) -> anyhow::Result<String> {
    let (subject, role) = match (admin, user) {
        (true, _) => ("0".to_owned(), gateway::auth::Role::Admin),
        (false, Some(id)) => (id.to_string(), gateway::auth::Role::Learner),
        (false, None) => anyhow::bail!("give --admin or --user ID"),
    };
    let ttl = Duration::from_secs(hours * 3600);
    Ok(gateway::auth::issue_token(secret, &subject, role, ttl)?)
}
