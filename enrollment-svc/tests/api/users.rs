//! Users: create, read by id and by email (case-insensitive), roles, duplicates, bad input;
//! and the server's health and reflection.
use learnhub_db::Backend;
use learnhub_proto::enrollment::v1 as pb;
use tonic::Code;

use crate::{
    helpers::{assert_status, spawn_app},
    on_both_backends,
};

on_both_backends!(
    users_are_one_per_email_in_any_case,
    bad_user_input_names_the_field,
    health_reports_serving,
);

fn new_user(email: &str, name: &str, role: pb::Role) -> pb::CreateUserRequest {
    pb::CreateUserRequest {
        email: email.into(),
        display_name: name.into(),
        role: role as i32,
    }
}

async fn users_are_one_per_email_in_any_case(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut c = app.client();
    let ada = c
        .create_user(new_user(
            " Ada@Example.com ",
            " Ada Lovelace ",
            pb::Role::Unspecified,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ada.email, "Ada@Example.com",
        "kept as typed (trimmed) for display"
    );
    assert_eq!(ada.display_name, "Ada Lovelace");
    assert_eq!(ada.role, pb::Role::Learner as i32, "unset role is learner");
    assert!(ada.created_at.is_some());

    let by_id = c
        .get_user(pb::GetUserRequest { id: ada.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_id, ada);
    for spelling in ["ada@example.com", "ADA@EXAMPLE.COM", "Ada@Example.com"] {
        let found = c
            .get_user_by_email(pb::GetUserByEmailRequest {
                email: spelling.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(found.id, ada.id, "{spelling}");
    }
    assert_status(
        c.create_user(new_user(
            "ada@EXAMPLE.com",
            "Another Ada",
            pb::Role::Learner,
        ))
        .await,
        Code::AlreadyExists,
        "ada@EXAMPLE.com",
    );

    let admin = c
        .create_user(new_user("grace@example.com", "Grace", pb::Role::Admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(admin.role, pb::Role::Admin as i32);
    assert_ne!(admin.id, ada.id);

    assert_status(
        c.get_user(pb::GetUserRequest { id: 9_999 }).await,
        Code::NotFound,
        "user 9999",
    );
    assert_status(
        c.get_user_by_email(pb::GetUserByEmailRequest {
            email: "nobody@example.com".into(),
        })
        .await,
        Code::NotFound,
        "nobody@example.com",
    );
}

async fn bad_user_input_names_the_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut c = app.client();
    for email in [
        "",
        "ada",
        "ada@",
        "@example.com",
        "ada@example",
        "a b@example.com",
        "ada@@example.com",
    ] {
        assert_status(
            c.create_user(new_user(email, "Ada", pb::Role::Learner))
                .await,
            Code::InvalidArgument,
            "email",
        );
        assert_status(
            c.get_user_by_email(pb::GetUserByEmailRequest {
                email: email.into(),
            })
            .await,
            Code::InvalidArgument,
            "email",
        );
    }
    assert_status(
        c.create_user(new_user("ada@example.com", "   ", pb::Role::Learner))
            .await,
        Code::InvalidArgument,
        "display_name",
    );
    assert_status(
        c.create_user(new_user(
            "ada@example.com",
            &"x".repeat(101),
            pb::Role::Learner,
        ))
        .await,
        Code::InvalidArgument,
        "display_name",
    );
    assert_status(
        c.create_user(pb::CreateUserRequest {
            email: "ada@example.com".into(),
            display_name: "Ada".into(),
            role: 7,
        })
        .await,
        Code::InvalidArgument,
        "role",
    );
    assert_status(
        c.get_user(pb::GetUserRequest { id: 0 }).await,
        Code::InvalidArgument,
        "id",
    );
    assert_status(
        c.get_user(pb::GetUserRequest { id: -3 }).await,
        Code::InvalidArgument,
        "id",
    );
    // Nothing was written by the refused calls.
    assert_status(
        c.get_user_by_email(pb::GetUserByEmailRequest {
            email: "ada@example.com".into(),
        })
        .await,
        Code::NotFound,
        "user",
    );
}

async fn health_reports_serving(backend: Backend) {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let app = spawn_app(backend).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let status = health
        .check(HealthCheckRequest {
            service: enrollment_svc::SERVICE_NAME.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);
}
