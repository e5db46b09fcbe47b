//! Throwaway databases for tests: each test gets its own Postgres database or SQLite file,
//! created empty and dropped when the guard is dropped, so tests run in parallel.
use std::{
    path::PathBuf,
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};

use crate::{Backend, DbError, PgTarget};

/// Where tests find Postgres: `TEST_DATABASE_URL`, a maintenance database the tests may
/// create databases from (default `postgres://postgres@127.0.0.1:5432/postgres`). Its query
/// (`?sslmode=…`) carries over to the test databases.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

static NEXT: AtomicU64 = AtomicU64::new(0);

fn unique_name(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A database that exists for as long as this value.
pub struct TestDatabase {
    url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Postgres { admin_url: String, name: String },
    Sqlite { path: PathBuf },
}

impl TestDatabase {
    /// Creates an empty database. Panics when Postgres is unreachable: tests need the real one.
    pub async fn create(backend: Backend) -> Self {
        match backend {
            Backend::Postgres => {
                let admin_url = admin_url();
                let name = unique_name("lh_test");
                let mut admin = connect(&admin_url)
                    .await
                    .unwrap_or_else(|err| panic!("tests need Postgres at {admin_url}: {err}"));
                admin
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .await
                    .unwrap_or_else(|err| panic!("CREATE DATABASE {name}: {err}"));
                let (path, query) = admin_url
                    .split_once('?')
                    .map_or((admin_url.as_str(), None), |(path, query)| {
                        (path, Some(query))
                    });
                let base = path.rsplit_once('/').map_or(path, |(base, _)| base);
                let query = query.map(|query| format!("?{query}")).unwrap_or_default();
                Self {
                    url: format!("{base}/{name}{query}"),
                    cleanup: Cleanup::Postgres { admin_url, name },
                }
            }
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("{}.db", unique_name("lh_test")));
                Self {
                    url: format!("sqlite://{}", path.display()),
                    cleanup: Cleanup::Sqlite { path },
                }
            }
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Postgres { admin_url, name } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                // Drop runs inside or outside a runtime; a thread with its own runtime works in both.
                let dropped = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|err| err.to_string())?;
                    runtime.block_on(async {
                        let mut admin = connect(&admin_url).await.map_err(|err| err.to_string())?;
                        admin
                            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .await
                            .map_err(|err| err.to_string())
                    })
                })
                .join();
                if let Ok(Err(err)) = dropped {
                    eprintln!("could not drop test database: {err}");
                }
            }
            Cleanup::Sqlite { path } => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
        }
    }
}

/// A connection to `url` the way the pool opens them (its `sslmode` honoured).
async fn connect(url: &str) -> Result<AsyncPgConnection, DbError> {
    PgTarget::parse(url)?
        .connect()
        .await
        .map_err(|err| DbError::Unavailable(err.to_string()))
}

/// Runs each `$test(Backend)` twice, as `$test::sqlite` and `$test::postgres`, on a multi-thread
/// runtime (diesel-async's SQLite wrapper and migrations block in place).
#[macro_export]
macro_rules! on_both_backends {
    ($($test:ident),+ $(,)?) => {
        $(
            mod $test {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$test($crate::Backend::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$test($crate::Backend::Postgres).await
                }
            }
        )+
    };
}
