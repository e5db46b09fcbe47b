//! How a data service reaches its database: flags with environment fallbacks.
use std::time::Duration;

/// How a data service reaches its database.
#[derive(Debug, Clone, clap::Args)]
pub struct DbArgs {
    /// `postgres://user@host:port/db` or `sqlite://PATH` (the file is created if missing).
    /// Postgres TLS follows `?sslmode=` (`disable`, the default; `prefer`; `require`; `verify-ca`
    /// or `verify-full`, with `&sslrootcert=PATH` or the system roots).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Connections kept in the pool.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: u32,
    /// Statements slower than this are logged as slow queries (milliseconds).
    #[arg(long, env = "SLOW_QUERY_MS", default_value_t = 100)]
    pub slow_query_ms: u64,
    /// One statement repeated this many times within one RPC is logged as an N+1 pattern.
    #[arg(long, env = "N_PLUS_ONE_THRESHOLD", default_value_t = 5, value_parser = clap::value_parser!(u64).range(2..))]
    pub n_plus_one_threshold: u64,
}

impl DbArgs {
    pub fn slow_query_threshold(&self) -> Duration {
        Duration::from_millis(self.slow_query_ms)
    }

    /// How to open this database's pool; `application_name` shows in `pg_stat_activity`.
    pub fn options(&self, application_name: &'static str) -> crate::DbOptions {
        crate::DbOptions {
            url: self.database_url.clone(),
            pool_size: self.db_pool_size,
            slow_query: self.slow_query_threshold(),
            n_plus_one_threshold: self.n_plus_one_threshold,
            application_name,
        }
    }
}
