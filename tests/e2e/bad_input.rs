//! Bad input never reaches a 500: every case is a JSON 4xx naming the field, and writes nothing.
use learnhub_db::Backend;
use serde_json::json;

use crate::{
    helpers::{admin, error_of, spawn_platform},
    on_both_backends,
};

on_both_backends!(bad_queries_and_paths, bad_bodies);

async fn bad_queries_and_paths(backend: Backend) {
    let platform = spawn_platform(backend).await;
    for (path, field) in [
        ("/v1/catalog?page_size=0", "page_size"),
        ("/v1/catalog?page_size=101", "page_size"),
        ("/v1/catalog?page_size=-5", "page_size"),
        ("/v1/catalog?page_size=lots", "page_size"),
        ("/v1/catalog?page_token=not-a-token", "page_token"),
        ("/v1/catalog?page_token=djE6eDox", "page_token"),
        ("/v1/catalog?type=ruby", "type"),
        ("/v1/catalog?category=Bad_Category", "category"),
        ("/v1/catalog?colour=blue", "colour"),
        ("/v1/courses/Bad_Slug", "slug"),
        ("/v1/courses/has%20space", "slug"),
        ("/v1/courses/0", "id"),
        ("/v1/courses/99999999999999999999999", "id"),
    ] {
        let (status, code, message) = error_of(platform.get(path).send().await.unwrap()).await;
        assert_eq!(
            (status.as_u16(), code.as_str()),
            (400, "invalid_argument"),
            "{path}: {message}"
        );
        assert!(
            message.contains(field),
            "{path}: {message:?} should name {field}"
        );
    }
}

async fn bad_bodies(backend: Backend) {
    let platform = spawn_platform(backend).await;
    let before = platform.get_json("/v1/categories").await;
    let valid =
        json!({"slug": "ok-slug", "title": "T", "course_type": "python", "category": "automation"});
    let with = |key: &str, value: serde_json::Value| {
        let mut body = valid.clone();
        body[key] = value;
        body
    };
    let cases = [
        (with("slug", json!("Bad Slug!")), 400, "slug"),
        (with("slug", json!("")), 400, "slug"),
        (with("slug", json!("a".repeat(101))), 400, "slug"),
        (with("title", json!("")), 400, "title"),
        (with("title", json!("   ")), 400, "title"),
        (with("title", json!("x".repeat(10_000))), 400, "title"),
        (with("course_type", json!("ruby")), 400, "course_type"),
        (with("course_type", json!(3)), 400, "course_type"),
        (with("level", json!("expert")), 400, "level"),
        (with("status", json!("published")), 400, "status"),
        (with("is_featured", json!("yes")), 400, "is_featured"),
        (with("category", json!("No Such")), 400, "category"),
        (with("category", json!("no-such-category")), 404, "category"),
    ];
    for (body, want, field) in cases {
        let response = platform
            .post("/v1/admin/courses")
            .bearer_auth(admin())
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, code, message) = error_of(response).await;
        assert_eq!(status.as_u16(), want, "{body}: {code} {message}");
        assert!(
            message.contains(field),
            "{body}: {message:?} should name {field}"
        );
    }

    for (content_type, raw, mention) in [
        ("application/json", "{\"slug\": ", "JSON"),
        ("application/json", "[1, 2]", "JSON"),
        ("application/json", "", "JSON"),
        ("text/plain", "{}", "Content-Type"),
    ] {
        let response = platform
            .post("/v1/admin/courses")
            .bearer_auth(admin())
            .header("content-type", content_type)
            .body(raw)
            .send()
            .await
            .unwrap();
        let (status, code, message) = error_of(response).await;
        assert_eq!(
            (status.as_u16(), code.as_str()),
            (400, "invalid_argument"),
            "{raw:?}: {message}"
        );
        assert!(message.contains(mention), "{raw:?}: {message}");
    }
    for (path, body, field) in [
        ("/v1/admin/courses/abc", json!({"title": "x"}), "id"),
        ("/v1/admin/courses/1", json!({"title": ""}), "title"),
        ("/v1/admin/courses/1", json!({"slug": "UPPER"}), "slug"),
        ("/v1/admin/courses/1", json!({"level": 7}), "level"),
        ("/v1/admin/courses/1", json!({"tilte": "typo"}), "tilte"),
    ] {
        let response = platform
            .patch(path)
            .bearer_auth(admin())
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, code, message) = error_of(response).await;
        assert_eq!(
            (status.as_u16(), code.as_str()),
            (400, "invalid_argument"),
            "{path} {body}: {message}"
        );
        assert!(message.contains(field), "{path} {body}: {message}");
    }
    // No partial write from any of the above.
    assert_eq!(platform.get_json("/v1/categories").await, before);
    let course = platform.get_json("/v1/courses/1").await;
    assert_ne!(course["course"]["title"], "");
}
