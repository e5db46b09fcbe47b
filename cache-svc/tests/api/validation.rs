//! Bad input is INVALID_ARGUMENT naming the field.
use cache_svc::Config;
use learnhub_proto::cache::v1::{
    DeleteRequest, GetManyRequest, GetRequest, InvalidatePatternRequest, SetManyRequest, SetRequest,
};
use tonic::Code;

use crate::helpers::{spawn_app_with, test_config};

fn assert_invalid<T: std::fmt::Debug>(result: Result<T, tonic::Status>, field: &str) {
    let status = result.expect_err("must be refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with(&format!("{field}:")),
        "message should name `{field}`: {}",
        status.message()
    );
}

fn set(key: &str, value: Vec<u8>, ttl_seconds: u32) -> SetRequest {
    SetRequest {
        key: key.into(),
        value,
        ttl_seconds,
        lease: 0,
    }
}

#[tokio::test]
async fn bad_input_is_invalid_argument_naming_the_field() {
    let app = spawn_app_with(Config {
        max_value_bytes: 1024,
        redis_url: Some(crate::helpers::REDIS_URL.into()),
        ..test_config()
    })
    .await;
    let mut grpc = app.grpc.clone();

    assert_invalid(grpc.get(GetRequest { key: String::new() }).await, "key");
    assert_invalid(
        grpc.get(GetRequest {
            key: format!("ns:{}", "x".repeat(510)),
        })
        .await,
        "key",
    );
    assert_invalid(
        grpc.get(GetRequest {
            key: "no-namespace".into(),
        })
        .await,
        "key",
    );
    assert_invalid(grpc.set(set("", vec![1], 10)).await, "key");
    assert_invalid(grpc.set(set("ns:big", vec![0; 1025], 10)).await, "value");
    assert_invalid(
        grpc.set(set("ns:long", vec![1], 30 * 24 * 3600 + 1)).await,
        "ttl_seconds",
    );
    assert!(
        grpc.set(set("ns:edge", vec![0; 1024], 30 * 24 * 3600))
            .await
            .unwrap()
            .into_inner()
            .stored
    );
    assert_invalid(
        grpc.get_many(GetManyRequest {
            keys: vec!["ns:ok".into(), String::new()],
        })
        .await,
        "keys[1]",
    );
    assert_invalid(
        grpc.set_many(SetManyRequest {
            entries: vec![set("ns:ok", vec![1], 10), set("ns:x", vec![0; 2000], 10)],
        })
        .await,
        "entries[1].value",
    );
    assert_invalid(
        grpc.delete(DeleteRequest {
            keys: vec!["*".into()],
            relay: None,
        })
        .await,
        "keys[0]",
    );
    for pattern in ["*", "", "*:x", "cat*:x", "catalog", ":*"] {
        assert_invalid(
            grpc.invalidate_pattern(InvalidatePatternRequest {
                pattern: pattern.into(),
                relay: None,
            })
            .await,
            "pattern",
        );
    }
    // Empty batches are fine.
    let none = grpc
        .get_many(GetManyRequest { keys: vec![] })
        .await
        .unwrap()
        .into_inner();
    assert!(none.entries.is_empty());
    let deleted = grpc
        .delete(DeleteRequest {
            keys: vec![],
            relay: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.deleted, 0);
    // Nothing refused was stored.
    assert_eq!(app.stats().await.key_count, 1);
    app.stop().await;
}
