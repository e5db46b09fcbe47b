//! After Postgres ends the pool's sessions (a restart, `pg_terminate_backend`), one request fails,
//! not one per pooled connection: the statement that finds its connection lost makes checkouts
//! verify theirs for a while, so the pool drops the other dead ones instead of handing them out.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use diesel_async::SimpleAsyncConnection;
use learnhub_db::{Backend, Db, DbOptions, db_run, testing::TestDatabase};

const POOL: u32 = 4;

async fn connect(url: &str, application_name: &'static str) -> Db {
    Db::connect(&DbOptions {
        url: url.to_owned(),
        pool_size: POOL,
        slow_query: Duration::from_secs(60),
        n_plus_one_threshold: 3,
        application_name,
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_server_ends_every_session_only_the_first_statement_fails() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let db = connect(database.url(), "reconnect-pool").await;
    // Every connection of the pool open (held at once), then idle in it.
    let mut held = Vec::new();
    for _ in 0..POOL {
        held.push(db.conn().await.unwrap());
    }
    drop(held);

    let admin = connect(database.url(), "reconnect-admin").await;
    let mut conn = admin.conn().await.unwrap();
    let conn = &mut conn;
    db_run!(conn => conn.batch_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'reconnect-pool' AND datname = current_database()"
    ).await)
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut failed = 0;
    for _ in 0..POOL {
        if db.ping().await.is_err() {
            failed += 1;
        }
    }
    assert_eq!(
        failed, 1,
        "each dead connection handed out fails its statement"
    );
    db.ping().await.unwrap();
}
