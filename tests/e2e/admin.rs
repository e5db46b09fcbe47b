//! Admin course writes over REST: the auth matrix and the draft -> published -> archived life.
use learnhub_db::Backend;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    helpers::{SECRET, admin, error_of, learner, spawn_platform},
    on_both_backends,
};

on_both_backends!(auth_matrix, course_lifecycle, console_routes);

fn expired_admin() -> String {
    use jsonwebtoken::{EncodingKey, Header, encode};
    let claims = json!({"sub": "1", "role": "admin", "exp": 1_000_000_000});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn new_course(slug: &str) -> Value {
    json!({
        "slug": slug,
        "title": "Window Functions in Practice",
        "summary": "OVER, PARTITION BY, frames.",
        "course_type": "sql",
        "category": "analytics",
        "level": "advanced",
    })
}

async fn auth_matrix(backend: Backend) {
    let platform = spawn_platform(backend).await;
    let forged = gateway::auth::issue_token(
        "not-the-secret",
        "1",
        gateway::auth::Role::Admin,
        std::time::Duration::from_secs(60),
    )
    .unwrap();
    let refused: [(Option<String>, u16, &str); 5] = [
        (None, 401, "unauthenticated"),
        (Some("garbage".into()), 401, "unauthenticated"),
        (Some(forged), 401, "unauthenticated"),
        (Some(expired_admin()), 401, "unauthenticated"),
        (Some(learner()), 403, "permission_denied"),
    ];
    let before = platform.get_json("/v1/categories").await;
    for (bearer, want_status, want_code) in refused {
        for (method, path) in [
            ("POST", "/v1/admin/courses".to_owned()),
            ("PATCH", "/v1/admin/courses/1".to_owned()),
            ("POST", "/v1/admin/courses/1/publish".to_owned()),
            ("POST", "/v1/admin/courses/1/archive".to_owned()),
        ] {
            let request = if method == "POST" {
                platform.post(&path)
            } else {
                platform.patch(&path)
            };
            let mut request = request.json(&new_course("never-written"));
            if let Some(bearer) = &bearer {
                request = request.bearer_auth(bearer);
            }
            let (status, code, _) = error_of(request.send().await.unwrap()).await;
            assert_eq!(
                (status.as_u16(), code.as_str()),
                (want_status, want_code),
                "{method} {path}"
            );
        }
    }
    // Nothing was written by any refused call.
    assert_eq!(platform.get_json("/v1/categories").await, before);
    let (status, ..) = error_of(
        platform
            .get("/v1/courses/never-written")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let response = platform
        .get("/v1/courses/never-written")
        .bearer_auth(admin())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

async fn course_lifecycle(backend: Backend) {
    let platform = spawn_platform(backend).await;
    let count_before =
        platform.get_json("/v1/catalog?page_size=1").await["summary"]["course_counts"]["sql"]
            .as_i64()
            .unwrap();

    let response = platform
        .post("/v1/admin/courses")
        .bearer_auth(admin())
        .json(&new_course("window-functions-in-practice"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["status"], "draft");
    assert_eq!(created["published_at"], Value::Null);
    assert_eq!(created["level"], "advanced");
    assert_eq!(created["category"]["slug"], "analytics");
    assert_eq!(created["is_featured"], false);

    // A draft is invisible to the public and to learners, visible to admins.
    for bearer in [None, Some(learner())] {
        let mut request = platform.get(&format!("/v1/courses/{id}"));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        assert_eq!(
            request.send().await.unwrap().status(),
            StatusCode::NOT_FOUND
        );
    }
    let response = platform
        .get("/v1/courses/window-functions-in-practice")
        .bearer_auth(admin())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // PATCH changes only the fields sent.
    let response = platform
        .patch(&format!("/v1/admin/courses/{id}"))
        .bearer_auth(admin())
        .json(&json!({"title": "Window Functions, Really", "is_featured": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["title"], "Window Functions, Really");
    assert_eq!(updated["is_featured"], true);
    for unchanged in [
        "slug",
        "summary",
        "course_type",
        "category",
        "level",
        "status",
        "created_at",
    ] {
        assert_eq!(updated[unchanged], created[unchanged], "{unchanged}");
    }

    let response = platform
        .post(&format!("/v1/admin/courses/{id}/publish"))
        .bearer_auth(admin())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let published: Value = response.json().await.unwrap();
    assert_eq!(published["status"], "published");
    assert!(published["published_at"].is_string());
    let public = platform
        .get_json("/v1/courses/window-functions-in-practice")
        .await;
    assert_eq!(public["course"]["id"], id);
    let summary = platform.get_json("/v1/catalog?page_size=1").await;
    assert_eq!(
        summary["summary"]["course_counts"]["sql"].as_i64().unwrap(),
        count_before + 1
    );

    let response = platform
        .post(&format!("/v1/admin/courses/{id}/archive"))
        .bearer_auth(admin())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let archived: Value = response.json().await.unwrap();
    assert_eq!(archived["status"], "archived");
    let response = platform
        .get(&format!("/v1/courses/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // archived -> published is an illegal transition.
    let (status, code, message) = error_of(
        platform
            .post(&format!("/v1/admin/courses/{id}/publish"))
            .bearer_auth(admin())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status.as_u16(), code.as_str()),
        (409, "failed_precondition"),
        "{message}"
    );

    // The slug is taken, whatever the first course's status.
    let (status, code, _) = error_of(
        platform
            .post("/v1/admin/courses")
            .bearer_auth(admin())
            .json(&new_course("window-functions-in-practice"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status.as_u16(), code.as_str()), (409, "already_exists"));
    let (status, code, _) = error_of(
        platform
            .post("/v1/admin/courses/99999999/publish")
            .bearer_auth(admin())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status.as_u16(), code.as_str()), (404, "not_found"));
}

/// What the admin console reads and does beyond the other admin routes: the courses of one
/// status (drafts, which the public catalog never shows) and a reset of both services' database
/// statistics; bad input named.
async fn console_routes(backend: Backend) {
    let platform = spawn_platform(backend).await;
    let response = platform
        .post("/v1/admin/courses")
        .bearer_auth(admin())
        .json(&new_course("console-draft"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let draft: Value = response.json().await.unwrap();
    let id = draft["id"].as_i64().unwrap();

    let drafts = platform
        .get_json_as(&admin(), "/v1/admin/courses?status=draft&page_size=100")
        .await;
    let listed: Vec<&Value> = drafts["courses"].as_array().unwrap().iter().collect();
    assert!(listed.iter().any(|c| c["id"] == id), "{drafts}");
    assert!(listed.iter().all(|c| c["status"] == "draft"), "{drafts}");
    let published = platform
        .get_json_as(&admin(), "/v1/admin/courses?status=published&page_size=100")
        .await;
    let published = published["courses"].as_array().unwrap();
    assert!(!published.is_empty());
    assert!(
        published
            .iter()
            .all(|c| c["status"] == "published" && c["id"] != id)
    );

    for (query, field) in [("status=live", "status"), ("page_size=0", "page_size")] {
        let response = platform
            .get(&format!("/v1/admin/courses?{query}"))
            .bearer_auth(admin())
            .send()
            .await
            .unwrap();
        let (status, code, message) = error_of(response).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_argument")
        );
        assert!(message.starts_with(field), "{message}");
    }

    // Reset: both services' statistics start afresh.
    platform.get_json("/v1/catalog").await;
    let before = platform.get_json_as(&admin(), "/v1/admin/db/stats").await;
    assert!(before["catalog"]["totals"]["statements"].as_u64().unwrap() > 0);
    let response = platform
        .post("/v1/admin/db/stats/reset")
        .bearer_auth(admin())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let reset: Value = response.json().await.unwrap();
    assert_eq!(reset["reset"], json!(["catalog-svc", "enrollment-svc"]));
    let after = platform.get_json_as(&admin(), "/v1/admin/db/stats").await;
    assert_eq!(after["catalog"]["totals"]["statements"], 0, "{after}");
    assert_eq!(after["enrollment"]["totals"]["statements"], 0, "{after}");
}
