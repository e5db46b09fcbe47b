//! The Postgres side of perf-report: the databases it creates and marks as its own, and the
//! performance-index migration it takes away and puts back.
use anyhow::{Context, bail};
use diesel::migration::MigrationSource;
use diesel::{
    Connection,
    dsl::sql,
    sql_types::{BigInt, Nullable, Text},
};
use diesel_async::{
    AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection,
    async_connection_wrapper::AsyncConnectionWrapper,
};
use diesel_migrations::MigrationHarness;
use learnhub_db::{Migrations, run_migrations};

/// How perf-report marks a database it created (`COMMENT ON DATABASE`).
const MARK: &str = "perf-report:";

/// What a database name stands for on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbState {
    Missing,
    /// Created by perf-report; `seeded` once a seed finished.
    Ours {
        scale: String,
        seeded: bool,
    },
    /// Anything else: never touched without `--reuse-existing`.
    Foreign,
}

/// The maintenance connection (`--postgres`).
pub struct PgAdmin {
    maintenance_url: String,
    conn: AsyncPgConnection,
}

impl PgAdmin {
    pub async fn connect(maintenance_url: &str) -> anyhow::Result<Self> {
        let conn = AsyncPgConnection::establish(maintenance_url)
            .await
            .with_context(|| format!("cannot connect to Postgres at {maintenance_url}"))?;
        Ok(Self {
            maintenance_url: maintenance_url.to_owned(),
            conn,
        })
    }

    /// The URL of database `name` on the same server.
    pub fn url_of(&self, name: &str) -> anyhow::Result<String> {
        database_url(&self.maintenance_url, name)
    }

    pub async fn state(&mut self, name: &str) -> anyhow::Result<DbState> {
        let name = checked_name(name)?;
        let exists: i64 = diesel::select(sql::<BigInt>(&format!(
            "(SELECT count(*) FROM pg_database WHERE datname = '{name}')"
        )))
        .get_result(&mut self.conn)
        .await?;
        if exists == 0 {
            return Ok(DbState::Missing);
        }
        let comment: Option<String> = diesel::select(sql::<Nullable<Text>>(&format!(
            "(SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '{name}')"
        )))
        .get_result(&mut self.conn)
        .await?;
        Ok(parse_mark(comment.as_deref()))
    }

    pub async fn create(&mut self, name: &str, scale: &str) -> anyhow::Result<()> {
        let name = checked_name(name)?;
        self.conn
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("CREATE DATABASE {name}"))?;
        self.mark(name, scale, false).await
    }

    /// Records that the database is perf-report's, at `scale`, and whether its seed finished.
    pub async fn mark(&mut self, name: &str, scale: &str, seeded: bool) -> anyhow::Result<()> {
        let name = checked_name(name)?;
        let comment = mark_text(scale, seeded).replace('\'', "''");
        self.conn
            .batch_execute(&format!("COMMENT ON DATABASE {name} IS '{comment}'"))
            .await
            .with_context(|| format!("COMMENT ON DATABASE {name}"))?;
        Ok(())
    }

    /// Drops a database; callers check first that it is perf-report's.
    pub async fn drop_database(&mut self, name: &str) -> anyhow::Result<()> {
        let name = checked_name(name)?;
        self.conn
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .with_context(|| format!("DROP DATABASE {name}"))?;
        Ok(())
    }

    /// Size on disk (bytes); 0 when it does not exist.
    pub async fn size(&mut self, name: &str) -> anyhow::Result<u64> {
        let name = checked_name(name)?;
        let size: i64 = diesel::select(sql::<BigInt>(&format!(
            "(SELECT coalesce(sum(pg_database_size(datname)), 0)::bigint FROM pg_database WHERE datname = '{name}')"
        )))
        .get_result(&mut self.conn)
        .await?;
        Ok(u64::try_from(size).unwrap_or(0))
    }

    pub async fn version(&mut self) -> anyhow::Result<String> {
        let version: String = diesel::select(sql::<Text>("current_setting('server_version')"))
            .get_result(&mut self.conn)
            .await?;
        Ok(format!("PostgreSQL {version}"))
    }

    /// The server's data directory (readable by superusers and pg_read_all_settings only).
    pub async fn data_directory(&mut self) -> Option<String> {
        diesel::select(sql::<Text>("current_setting('data_directory')"))
            .get_result(&mut self.conn)
            .await
            .ok()
    }

    /// True when the server is on this machine, so `df` of its data directory means something.
    pub fn is_local(&self) -> bool {
        let host = self
            .maintenance_url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .map(|authority| authority.rsplit('@').next().unwrap_or(authority))
            .unwrap_or_default();
        let host = host.rsplit_once(':').map_or(host, |(host, _)| host);
        matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1" | "")
    }
}

fn mark_text(scale: &str, seeded: bool) -> String {
    let state = if seeded { "seeded" } else { "seeding" };
    format!("{MARK} scale {scale}, {state}")
}

fn parse_mark(comment: Option<&str>) -> DbState {
    let Some(rest) = comment.and_then(|c| c.strip_prefix(MARK)) else {
        return DbState::Foreign;
    };
    let rest = rest.trim();
    let scale = rest
        .strip_prefix("scale ")
        .and_then(|r| r.split(',').next())
        .unwrap_or_default()
        .to_owned();
    DbState::Ours {
        scale,
        seeded: rest.ends_with("seeded"),
    }
}

/// Database names are generated (`lh_perf_catalog_s1`); anything else is refused rather than
/// quoted, since they are spliced into DDL.
fn checked_name(name: &str) -> anyhow::Result<&str> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(name)
    } else {
        bail!("{name:?} is not a database name perf-report makes ([a-z_][a-z0-9_]*)")
    }
}

/// `postgres://u@h:5432/postgres?x=y` with database `name` → `postgres://u@h:5432/name?x=y`.
pub fn database_url(maintenance_url: &str, name: &str) -> anyhow::Result<String> {
    let (base, query) = match maintenance_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (maintenance_url, None),
    };
    let Some((scheme, rest)) = base.split_once("://") else {
        bail!("--postgres must be a postgres:// URL, got {maintenance_url:?}");
    };
    if scheme != "postgres" && scheme != "postgresql" {
        bail!("--postgres must be a postgres:// URL, got {maintenance_url:?}");
    }
    let authority = rest.split('/').next().unwrap_or(rest);
    let mut url = format!("{scheme}://{authority}/{}", checked_name(name)?);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    Ok(url)
}

/// Takes the service's performance-index migration (the one named `…performance_indexes`) away
/// (`on = false`) or puts it back (`on = true`); the migrations after it (e.g. the cache
/// outbox) stay. Returns the migration's name.
pub async fn set_performance_indexes(
    url: &str,
    migrations: fn() -> Migrations,
    on: bool,
) -> anyhow::Result<String> {
    // Everything applied first (on: the index migration is applied again if it was taken away).
    run_migrations(url, migrations()).await?;
    let source = migrations().postgres;
    let name = MigrationSource::<diesel::pg::Pg>::migrations(&source)
        .map_err(|err| anyhow::anyhow!("reading embedded migrations: {err}"))?
        .iter()
        .map(|m| m.name().to_string())
        .rfind(|name| name.ends_with("performance_indexes"))
        .context("the service has no performance_indexes migration")?;
    if on {
        return Ok(name);
    }
    let url = url.to_owned();
    let wanted = name.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        // The wrapper blocks on the runtime, so it lives on a blocking thread (as in the kit).
        let mut conn = <AsyncConnectionWrapper<AsyncPgConnection> as Connection>::establish(&url)
            .with_context(|| format!("connecting to {url}"))?;
        let all = MigrationSource::<diesel::pg::Pg>::migrations(&source)
            .map_err(|err| anyhow::anyhow!("reading embedded migrations: {err}"))?;
        let migration = all
            .iter()
            .find(|m| m.name().to_string() == wanted)
            .context("the index migration vanished")?;
        conn.revert_migration(migration.as_ref())
            .map_err(|err| anyhow::anyhow!("reverting the index migration: {err}"))?;
        Ok(())
    })
    .await??;
    Ok(name)
}

/// `VACUUM ANALYZE`: fresh planner statistics and visibility maps (index-only scans) after a
/// bulk load, as any production database would have.
pub async fn vacuum_analyze(url: &str) -> anyhow::Result<()> {
    let mut conn = AsyncPgConnection::establish(url)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    conn.batch_execute("VACUUM ANALYZE").await?;
    Ok(())
}

/// `ANALYZE` after indexes come back.
pub async fn analyze(url: &str) -> anyhow::Result<()> {
    let mut conn = AsyncPgConnection::establish(url)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    conn.batch_execute("ANALYZE").await?;
    Ok(())
}

/// Smallest and largest user id, and the number of users.
pub async fn user_ids(url: &str) -> anyhow::Result<(i64, i64, i64)> {
    let mut conn = AsyncPgConnection::establish(url).await?;
    let row: (i64, i64, i64) = diesel::select((
        sql::<BigInt>("(SELECT coalesce(min(id), 0) FROM users)"),
        sql::<BigInt>("(SELECT coalesce(max(id), 0) FROM users)"),
        sql::<BigInt>("(SELECT count(*) FROM users)"),
    ))
    .get_result(&mut conn)
    .await?;
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_keep_server_and_options() {
        assert_eq!(
            database_url(
                "postgres://postgres@127.0.0.1:5432/postgres",
                "lh_perf_catalog_s1"
            )
            .unwrap(),
            "postgres://postgres@127.0.0.1:5432/lh_perf_catalog_s1"
        );
        assert_eq!(
            database_url("postgresql://u:p@db/postgres?sslmode=disable", "x_1").unwrap(),
            "postgresql://u:p@db/x_1?sslmode=disable"
        );
        assert_eq!(
            database_url("postgres://h:5432", "x").unwrap(),
            "postgres://h:5432/x"
        );
        assert!(database_url("sqlite://x", "x").is_err());
        assert!(database_url("postgres://h/postgres", "x; DROP").is_err());
        assert!(database_url("postgres://h/postgres", "Upper").is_err());
    }

    #[test]
    fn marks_round_trip_and_strangers_are_foreign() {
        assert_eq!(
            parse_mark(Some(&mark_text("0.1", true))),
            DbState::Ours {
                scale: "0.1".into(),
                seeded: true
            }
        );
        assert_eq!(
            parse_mark(Some(&mark_text("1", false))),
            DbState::Ours {
                scale: "1".into(),
                seeded: false
            }
        );
        assert_eq!(parse_mark(None), DbState::Foreign);
        assert_eq!(parse_mark(Some("production data")), DbState::Foreign);
    }
}
