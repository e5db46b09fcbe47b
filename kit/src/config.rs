//! Command-line flags shared by the services; every flag also reads an environment variable.
use std::time::Duration;

/// How a data service reaches its database.
#[derive(Debug, Clone, clap::Args)]
pub struct DbArgs {
    /// `postgres://user@host:port/db` or `sqlite://PATH` (the file is created if missing).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Connections kept in the pool.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: u32,
    /// Statements slower than this are logged as slow queries (milliseconds).
    #[arg(long, env = "SLOW_QUERY_MS", default_value_t = 100)]
    pub slow_query_ms: u64,
}

impl DbArgs {
    pub fn slow_query_threshold(&self) -> Duration {
        Duration::from_millis(self.slow_query_ms)
    }
}

/// Log output.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// `text` for people, `json` for log collectors. Filter with RUST_LOG (default `info`).
    #[arg(long, env = "LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}
