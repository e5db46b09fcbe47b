//! The database layer. The URL picks the backend — `postgres://…` (diesel-async's native
//! `AsyncPgConnection`) or `sqlite://PATH` (bundled SQLite behind `SyncConnectionWrapper`) — and
//! queries are written once: [`db_run!`](crate::db_run) runs the same diesel query on either.
//! Every Postgres connection, pooled or for migrations, opens through [`PgTarget`] and so
//! honours the URL's `sslmode`.
use std::{path::Path, sync::Arc, time::Duration};

use diesel::{Connection, ConnectionError, sqlite::SqliteConnection};
use diesel_async::{
    AsyncConnection, AsyncPgConnection, SimpleAsyncConnection,
    async_connection_wrapper::AsyncConnectionWrapper,
    pooled_connection::{
        AsyncDieselConnectionManager, ManagerConfig, PoolError, RecyclingMethod, bb8::Pool,
    },
    sync_connection_wrapper::SyncConnectionWrapper,
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};
use futures::FutureExt;

use crate::{
    Backend, DbError, PgTarget, pool_metrics,
    profiler::{ConnectionProbe, ProfilerSettings, QueryProfiler, RpcScope},
};

pub type PgConn = AsyncPgConnection;
pub type SqliteConn = SyncConnectionWrapper<SqliteConnection>;
type PgManager = AsyncDieselConnectionManager<PgConn>;
type SqliteManager = AsyncDieselConnectionManager<SqliteConn>;

/// How to open a pool.
#[derive(Debug, Clone)]
pub struct DbOptions {
    pub url: String,
    pub pool_size: u32,
    pub slow_query: Duration,
    /// Repeats of one statement within one RPC that count as N+1.
    pub n_plus_one_threshold: u64,
    /// Shown in `pg_stat_activity`.
    pub application_name: &'static str,
}

#[derive(Clone)]
enum Pools {
    Postgres(Pool<PgConn>),
    Sqlite(Pool<SqliteConn>),
}

/// A pool of connections to one database, with the profiler installed on every connection.
#[derive(Clone)]
pub struct Db {
    /// Shared by the clones; the pool-metrics task holds it weakly, so the pool closes with the
    /// last clone.
    pools: Arc<Pools>,
    profiler: Arc<QueryProfiler>,
    max_connections: u32,
}

/// A connection checked out of a [`Db`]; returned to the pool on drop.
// Moved once per checkout and never stored in bulk: boxing the larger variant buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum DbConn {
    Postgres(bb8::PooledConnection<'static, PgManager>),
    Sqlite(bb8::PooledConnection<'static, SqliteManager>),
}

/// Runs the same diesel code on whichever backend `conn` (a `&mut DbConn`) holds: inside the
/// body, `conn` is the concrete connection. The body is compiled once per backend.
#[macro_export]
macro_rules! db_run {
    ($conn:ident => $body:expr) => {
        match $conn {
            $crate::DbConn::Postgres($conn) => {
                let $conn: &mut $crate::PgConn = &mut *$conn;
                $body
            }
            $crate::DbConn::Sqlite($conn) => {
                let $conn: &mut $crate::SqliteConn = &mut *$conn;
                $body
            }
        }
    };
}

/// Inserts many rows (a `Vec` of `Insertable`s) in one multi-row statement on either backend.
/// diesel-async cannot run a multi-row INSERT on SQLite, so that arm runs diesel's synchronous
/// batch insert on the connection's blocking thread; the query text is the same.
#[macro_export]
macro_rules! db_insert_many {
    ($conn:ident, $table:expr, $rows:expr) => {{
        let rows = $rows;
        match $conn {
            $crate::DbConn::Postgres(conn) => {
                let conn: &mut $crate::PgConn = &mut *conn;
                diesel_async::RunQueryDsl::execute(diesel::insert_into($table).values(&rows), conn)
                    .await
            }
            $crate::DbConn::Sqlite(conn) => {
                let conn: &mut $crate::SqliteConn = &mut *conn;
                conn.spawn_blocking(move |conn| {
                    diesel::RunQueryDsl::execute(diesel::insert_into($table).values(&rows), conn)
                })
                .await
            }
        }
    }};
}

impl DbConn {
    /// Runs `body` in one transaction on this connection (on SQLite `BEGIN IMMEDIATE`):
    /// committed when it returns `Ok`, rolled back when it returns `Err`. The body gets the connection back as a `DbConn`, so the
    /// model functions (which take one) compose inside it; theirs nest as savepoints.
    pub async fn transaction<T, E>(
        &mut self,
        body: impl AsyncFnOnce(&mut DbConn) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<diesel::result::Error>,
    {
        use diesel_async::TransactionManager;
        async fn begin<C: AsyncConnection>(conn: &mut C) -> diesel::QueryResult<()> {
            C::TransactionManager::begin_transaction(conn).await
        }
        async fn commit<C: AsyncConnection>(conn: &mut C) -> diesel::QueryResult<()> {
            C::TransactionManager::commit_transaction(conn).await
        }
        async fn rollback<C: AsyncConnection>(conn: &mut C) -> diesel::QueryResult<()> {
            C::TransactionManager::rollback_transaction(conn).await
        }
        match self {
            DbConn::Postgres(conn) => begin(&mut **conn).await?,
            // BEGIN IMMEDIATE: the write lock is taken (waiting up to busy_timeout) before the
            // body reads, so a body that reads then writes never meets SQLITE_BUSY on the lock
            // upgrade, which a deferred BEGIN gets at once under concurrent writers.
            DbConn::Sqlite(conn) => {
                let conn: &mut SqliteConn = conn;
                conn.spawn_blocking(|conn| {
                    diesel::connection::AnsiTransactionManager::begin_transaction_sql(
                        conn,
                        "BEGIN IMMEDIATE",
                    )
                })
                .await?;
            }
        }
        let result = body(&mut *self).await;
        let conn = &mut *self;
        match result {
            Ok(value) => {
                db_run!(conn => commit(conn).await)?;
                Ok(value)
            }
            Err(err) => match db_run!(conn => rollback(conn).await) {
                // A broken manager says the connection is lost: the caller's error says why.
                Ok(()) | Err(diesel::result::Error::BrokenTransactionManager) => Err(err),
                Err(rollback) => Err(rollback.into()),
            },
        }
    }
}

const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the pool gauges are refreshed besides on each checkout (a returned connection
/// changes them without passing through here).
const POOL_METRICS_EVERY: Duration = Duration::from_secs(5);

impl Db {
    /// Opens the pool and one connection, so a wrong URL fails at start.
    pub async fn connect(options: &DbOptions) -> Result<Self, DbError> {
        let profiler = QueryProfiler::new(ProfilerSettings {
            slow_threshold: options.slow_query,
            n_plus_one_threshold: options.n_plus_one_threshold,
            service: options.application_name,
        });
        let max_connections = options.pool_size.max(1);
        let pools = match Backend::from_url(&options.url)? {
            Backend::Postgres => {
                let target = PgTarget::parse(&options.url)?;
                let config = pg_config(target, options.application_name, Arc::clone(&profiler));
                let manager = PgManager::new_with_config(options.url.clone(), config);
                Pools::Postgres(build_pool(manager, max_connections).await?)
            }
            Backend::Sqlite => {
                let path = sqlite_path(&options.url)?;
                create_parent_dir(&path)?;
                let config = sqlite_config(Arc::clone(&profiler));
                let manager = SqliteManager::new_with_config(path, config);
                Pools::Sqlite(build_pool(manager, max_connections).await?)
            }
        };
        let db = Self {
            pools: Arc::new(pools),
            profiler,
            max_connections,
        };
        db.spawn_pool_metrics();
        Ok(db)
    }

    pub fn backend(&self) -> Backend {
        match *self.pools {
            Pools::Postgres(_) => Backend::Postgres,
            Pools::Sqlite(_) => Backend::Sqlite,
        }
    }

    pub fn profiler(&self) -> &Arc<QueryProfiler> {
        &self.profiler
    }

    /// Checks a connection out; `Unavailable` when none can be had within a few seconds. Its
    /// statements are attributed to the RPC the calling task is serving (see `profiler`).
    pub async fn conn(&self) -> Result<DbConn, DbError> {
        let unavailable = |err: bb8::RunError<PoolError>| DbError::Unavailable(err.to_string());
        let checked_out = match &*self.pools {
            Pools::Postgres(pool) => pool.get_owned().await.map(DbConn::Postgres),
            Pools::Sqlite(pool) => pool.get_owned().await.map(DbConn::Sqlite),
        };
        self.record_pool_metrics();
        let mut conn = checked_out.map_err(unavailable)?;
        let scope = RpcScope::current();
        let checked_out = &mut conn;
        // Safe to reach the instrumentation here: a checked-out connection has no query in
        // flight (diesel-async waits for a cancelled SQLite query before releasing it).
        db_run!(checked_out => {
            if let Some(probe) = checked_out.instrumentation().downcast_mut::<ConnectionProbe>() {
                probe.attach(scope);
            }
        });
        Ok(conn)
    }

    /// Sets the `learnhub_db_pool_*` metrics from bb8's state and statistics, labelled with the
    /// pool's application name (done on every checkout and every few seconds; cheap: one lock).
    pub fn record_pool_metrics(&self) {
        pool_metrics::record(
            self.profiler.service(),
            self.max_connections,
            &self.pools.state(),
        );
    }

    fn spawn_pool_metrics(&self) {
        let pools = Arc::downgrade(&self.pools);
        let (service, max_connections) = (self.profiler.service(), self.max_connections);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(POOL_METRICS_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                every.tick().await;
                let Some(pools) = pools.upgrade() else { return };
                pool_metrics::record(service, max_connections, &pools.state());
            }
        });
    }

    /// One round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), DbError> {
        let mut conn = self.conn().await?;
        let conn = &mut conn;
        db_run!(conn => conn.batch_execute("SELECT 1").await)?;
        Ok(())
    }
}

impl Pools {
    fn state(&self) -> bb8::State {
        match self {
            Self::Postgres(pool) => pool.state(),
            Self::Sqlite(pool) => pool.state(),
        }
    }
}

async fn build_pool<C>(
    manager: AsyncDieselConnectionManager<C>,
    size: u32,
) -> Result<Pool<C>, DbError>
where
    C: diesel_async::pooled_connection::PoolableConnection + 'static,
    AsyncDieselConnectionManager<C>: bb8::ManageConnection<Connection = C, Error = PoolError>,
{
    Pool::builder()
        .max_size(size)
        .min_idle(Some(1))
        .connection_timeout(CHECKOUT_TIMEOUT)
        .build(manager)
        .await
        .map_err(|err| DbError::Unavailable(err.to_string()))
}

fn pg_config(
    target: PgTarget,
    application_name: &'static str,
    profiler: Arc<QueryProfiler>,
) -> ManagerConfig<PgConn> {
    let target = Arc::new(target);
    let mut config = ManagerConfig::default();
    // Verified would run `SELECT 1` on every checkout: a round trip, and noise in the profiler.
    // Fast alone hands out each connection a Postgres restart killed, and its request fails:
    // so for a while after a statement found its connection lost, checkouts verify (a dead one
    // is dropped and another taken).
    let checks = Arc::clone(&profiler);
    config.recycling_method =
        RecyclingMethod::CustomFunction(Box::new(move |conn: &mut PgConn| {
            let verify = checks.verify_checkouts();
            Box::pin(async move {
                if verify {
                    conn.batch_execute("SELECT 1").await?;
                }
                Ok(())
            })
        }));
    // The manager's URL is the same as `target`'s, parsed once (and its certificates read once).
    config.custom_setup = Box::new(move |_url| {
        let target = Arc::clone(&target);
        let profiler = Arc::clone(&profiler);
        async move {
            let mut conn = target.connect().await?;
            // Set before the probe is installed, so start-up statements are not counted.
            conn.batch_execute(&format!(
                "SET application_name = '{application_name}'; SET statement_timeout = '30s'"
            ))
            .await
            .map_err(ConnectionError::CouldntSetupConfiguration)?;
            conn.set_instrumentation(profiler.probe(Backend::Postgres));
            Ok(conn)
        }
        .boxed()
    });
    config
}

const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;";

fn sqlite_config(profiler: Arc<QueryProfiler>) -> ManagerConfig<SqliteConn> {
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    config.custom_setup = Box::new(move |path| {
        let path = path.to_owned();
        let profiler = Arc::clone(&profiler);
        async move {
            let mut conn = SqliteConn::establish(&path).await?;
            conn.batch_execute(SQLITE_PRAGMAS)
                .await
                .map_err(ConnectionError::CouldntSetupConfiguration)?;
            conn.set_instrumentation(profiler.probe(Backend::Sqlite));
            Ok(conn)
        }
        .boxed()
    });
    config
}

/// `sqlite://data/x.db` → `data/x.db`; `sqlite:///tmp/x.db` → `/tmp/x.db`.
pub fn sqlite_path(url: &str) -> Result<String, DbError> {
    let path = url
        .strip_prefix("sqlite://")
        .ok_or_else(|| DbError::BadUrl("a SQLite DATABASE_URL is sqlite://PATH".into()))?;
    if path.is_empty() || path.contains(":memory:") {
        return Err(DbError::BadUrl(
            "sqlite://PATH needs a file path (an in-memory database is private to one connection)"
                .into(),
        ));
    }
    Ok(path.to_owned())
}

fn create_parent_dir(path: &str) -> Result<(), DbError> {
    match Path::new(path).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir)
            .map_err(|err| DbError::Unavailable(format!("cannot create {}: {err}", dir.display()))),
        _ => Ok(()),
    }
}

/// A service's embedded migrations, one folder per backend.
pub struct Migrations {
    pub postgres: EmbeddedMigrations,
    pub sqlite: EmbeddedMigrations,
    /// Key of the Postgres advisory lock that serialises concurrent runs (diesel does not).
    pub lock_key: i64,
}

/// Runs pending migrations and returns the versions applied.
pub async fn run_migrations(url: &str, migrations: Migrations) -> Result<Vec<String>, DbError> {
    let Migrations {
        postgres,
        sqlite,
        lock_key,
    } = migrations;
    let task = match Backend::from_url(url)? {
        Backend::Postgres => {
            let conn = PgTarget::parse(url)?
                .connect()
                .await
                .map_err(|err| DbError::Unavailable(err.to_string()))?;
            tokio::task::spawn_blocking(move || migrate_postgres(conn, postgres, lock_key))
        }
        Backend::Sqlite => {
            let url = url.to_owned();
            tokio::task::spawn_blocking(move || migrate_sqlite(&url, sqlite))
        }
    };
    task.await
        .map_err(|err| DbError::Migration(err.to_string()))?
}

fn migrate_postgres(
    conn: PgConn,
    migrations: EmbeddedMigrations,
    lock_key: i64,
) -> Result<Vec<String>, DbError> {
    // The wrapper blocks on the runtime handle, so this runs on a blocking thread.
    let mut conn = AsyncConnectionWrapper::<PgConn>::from(conn);
    use diesel::connection::SimpleConnection;
    SimpleConnection::batch_execute(&mut conn, &format!("SELECT pg_advisory_lock({lock_key})"))?;
    let applied = apply(&mut conn, migrations);
    let unlocked = SimpleConnection::batch_execute(
        &mut conn,
        &format!("SELECT pg_advisory_unlock({lock_key})"),
    );
    let applied = applied?;
    unlocked?;
    Ok(applied)
}

fn migrate_sqlite(url: &str, migrations: EmbeddedMigrations) -> Result<Vec<String>, DbError> {
    let path = sqlite_path(url)?;
    create_parent_dir(&path)?;
    let mut conn =
        SqliteConnection::establish(&path).map_err(|err| DbError::Unavailable(err.to_string()))?;
    use diesel::connection::SimpleConnection;
    conn.batch_execute(SQLITE_PRAGMAS)?;
    apply(&mut conn, migrations)
}

fn apply<C>(conn: &mut C, migrations: EmbeddedMigrations) -> Result<Vec<String>, DbError>
where
    C: MigrationHarness<C::Backend> + Connection,
{
    conn.run_pending_migrations(migrations)
        .map(|versions| versions.iter().map(ToString::to_string).collect())
        .map_err(|err| DbError::Migration(err.to_string()))
}
