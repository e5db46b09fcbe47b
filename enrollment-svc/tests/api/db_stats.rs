//! GetDbStats / ResetDbStats over real gRPC: after a reset and a known sequence of calls, the
//! statistics hold exactly those statements, per statement and per RPC.
use learnhub_db::Backend;
use learnhub_proto::{
    common::v1::{DbStats, GetDbStatsRequest, ResetDbStatsRequest},
    enrollment::v1 as pb,
};

use crate::{
    helpers::{TestApp, spawn_app},
    on_both_backends,
};

on_both_backends!(stats_count_a_known_sequence_exactly);

const SERVICE: &str = "/learnhub.enrollment.v1.EnrollmentService";

async fn db_stats(app: &TestApp) -> DbStats {
    app.client()
        .get_db_stats(GetDbStatsRequest {})
        .await
        .unwrap()
        .into_inner()
}

async fn stats_count_a_known_sequence_exactly(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = app.user().await;
    let mut c = app.client();
    c.reset_db_stats(ResetDbStatsRequest {}).await.unwrap();
    let empty = db_stats(&app).await;
    assert!(empty.statements.is_empty() && empty.rpcs.is_empty());

    // 1 x CreateUser, 2 x GetUser, 1 x GetUserByEmail, 1 x GetUser of an unknown id: 5
    // statements, every one a single read or write.
    let second = app.user().await;
    for id in [first.id, second.id] {
        c.get_user(pb::GetUserRequest { id }).await.unwrap();
    }
    c.get_user_by_email(pb::GetUserByEmailRequest {
        email: first.email.clone(),
    })
    .await
    .unwrap();
    c.get_user(pb::GetUserRequest { id: 999_999 })
        .await
        .unwrap_err();

    let stats = db_stats(&app).await;
    assert_eq!(stats.service, "enrollment-svc");
    assert_eq!(
        stats.backend,
        match backend {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    );
    let totals = stats.totals.unwrap();
    assert_eq!(
        (
            totals.statements,
            totals.errors,
            totals.n_plus_one,
            totals.rpc_calls
        ),
        (5, 0, 0, 5)
    );
    let thresholds = stats.thresholds.unwrap();
    assert_eq!(
        (thresholds.slow_query_ms, thresholds.n_plus_one),
        (1000.0, 5)
    );

    // Three shapes: the INSERT, user by id (3 times), user by normalised email.
    let mut counts: Vec<u64> = stats.statements.iter().map(|s| s.count).collect();
    counts.sort_unstable();
    assert_eq!(counts, [1, 1, 3], "{:#?}", stats.statements);
    let by_id = stats
        .statements
        .iter()
        .find(|s| s.count == 3)
        .unwrap()
        .statement
        .replace('`', "\"");
    assert!(
        by_id.contains(r#"FROM "users" WHERE ("users"."id" = "#),
        "{by_id}"
    );
    let totals_ms: Vec<f64> = stats.statements.iter().map(|s| s.total_ms).collect();
    assert!(
        totals_ms.windows(2).all(|pair| pair[0] >= pair[1]),
        "{totals_ms:?}"
    );

    let rpc = |name: &str| {
        let path = format!("{SERVICE}/{name}");
        stats
            .rpcs
            .iter()
            .find(|r| r.rpc == path)
            .map(|r| (r.calls, r.statements, r.max_statements))
            .unwrap_or_else(|| panic!("{path} in {:#?}", stats.rpcs))
    };
    assert_eq!(rpc("CreateUser"), (1, 1, 1));
    assert_eq!(rpc("GetUser"), (3, 3, 1));
    assert_eq!(rpc("GetUserByEmail"), (1, 1, 1));
    assert_eq!(stats.rpcs.len(), 3);

    c.reset_db_stats(ResetDbStatsRequest {}).await.unwrap();
    let reset = db_stats(&app).await;
    assert!(reset.statements.is_empty() && reset.rpcs.is_empty());
    assert_eq!(reset.totals.unwrap().statements, 0);
}
