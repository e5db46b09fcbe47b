//! Token hardening over the wire: weak secrets stop the start, one `Authorization` header per
//! request, and every token rule refuses with 401 (REST) and UNAUTHENTICATED (gRPC).
use std::{sync::Arc, time::Duration};

use gateway::auth::{Role, TokenRules, issue_token, issue_token_with};
use jsonwebtoken::{EncodingKey, Header, get_current_timestamp};
use learnhub_kit::shutdown::CancellationToken;
use learnhub_proto::gateway::v1::{
    GetCatalogPageRequest, gateway_service_client::GatewayServiceClient,
};
use reqwest::{StatusCode, header::AUTHORIZATION};
use serde_json::{Value, json};
use tonic::{Code, Request};

use crate::{SECRET, admin, fakes, learner};

const PREVIOUS: &str = "gateway-previous-secret-of-at-least-32-bytes";
const ISSUER: &str = "https://auth.learnhub.example";
const AUDIENCE: &str = "learnhub-gateway";

/// A gateway configuration in front of nothing (start-up checks only).
fn config(secret: &str) -> gateway::Config {
    gateway::Config {
        near_cache: Default::default(),
        listen: "127.0.0.1:0".into(),
        catalog_addr: "http://127.0.0.1:1".into(),
        enrollment_addr: None,
        cache_addr: None,
        auth_jwt_secret: secret.into(),
        upstream_timeout_ms: 2000,
        stale_if_error_secs: gateway::DEFAULT_STALE_IF_ERROR_SECS,
        auth_jwt_previous_secrets: Vec::new(),
        auth_jwt_issuer: None,
        auth_jwt_audience: None,
        auth_max_token_hours: 24,
        limits: gateway::limits::LimitConfig::default(),
        edge: gateway::edge::EdgeConfig::default(),
        tls: learnhub_kit::tls::TlsArgs::plaintext(),
    }
}

/// A gateway accepting `SECRET` and `PREVIOUS`, requiring `ISSUER` and `AUDIENCE`, in front of
/// the fake catalog; returns its address and the token that stops it when dropped.
async fn spawn_strict_gateway() -> (std::net::SocketAddr, ShutdownOnDrop) {
    let shutdown = CancellationToken::new();
    let catalog_addr = fakes::spawn_catalog(Arc::new(fakes::FakeCatalog::new()), &shutdown).await;
    let config = gateway::Config {
        near_cache: Default::default(),
        catalog_addr,
        auth_jwt_previous_secrets: vec![PREVIOUS.into()],
        auth_jwt_issuer: Some(ISSUER.into()),
        auth_jwt_audience: Some(AUDIENCE.into()),
        ..config(SECRET)
    };
    let app = gateway::Application::build(&config).await.unwrap();
    let addr = app.local_addr();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    (addr, ShutdownOnDrop(shutdown))
}

struct ShutdownOnDrop(CancellationToken);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

fn strict_rules() -> TokenRules {
    TokenRules {
        issuer: Some(ISSUER.into()),
        audience: Some(AUDIENCE.into()),
        ..TokenRules::default()
    }
}

/// A token with exactly these claims, signed with `secret`.
fn signed(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_secret_shorter_than_32_bytes_stops_the_start() {
    let short = "thirty-one-bytes-is-one-too-few";
    assert_eq!(short.len(), 31);
    let err = gateway::Application::build(&config(short))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("--auth-jwt-secret"), "{err}");
    assert!(err.contains("32 bytes"), "{err}");
    assert!(!err.contains(short), "{err}");

    let exactly_32 = "x".repeat(32);
    assert!(
        gateway::Application::build(&config(&exactly_32))
            .await
            .is_ok()
    );

    let previous = gateway::Config {
        near_cache: Default::default(),
        auth_jwt_previous_secrets: vec![PREVIOUS.into(), short.into()],
        ..config(SECRET)
    };
    let err = gateway::Application::build(&previous)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("--auth-jwt-previous-secrets"), "{err}");
    assert!(!err.contains(short) && !err.contains(PREVIOUS), "{err}");

    let no_lifetime = gateway::Config {
        near_cache: Default::default(),
        auth_max_token_hours: 0,
        limits: gateway::limits::LimitConfig::default(),
        edge: gateway::edge::EdgeConfig::default(),
        ..config(SECRET)
    };
    let err = gateway::Application::build(&no_lifetime)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("--auth-max-token-hours"), "{err}");
}

#[tokio::test]
async fn two_authorization_headers_are_a_400() {
    let gw = crate::spawn_gateway(crate::Options::default()).await;
    let (first, second) = (admin(), learner());
    for path in ["/v1/catalog", "/v1/admin/cache/stats", "/v1/me"] {
        let response = gw
            .get(path)
            .header(AUTHORIZATION, format!("Bearer {first}"))
            .header(AUTHORIZATION, format!("Bearer {second}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "invalid_argument", "{path}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("Authorization"), "{message}");
        assert!(!message.contains(&first) && !message.contains(&second));
    }
    // One header is fine.
    let response = gw
        .get("/v1/catalog")
        .header(AUTHORIZATION, format!("Bearer {first}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn two_authorization_entries_on_a_grpc_call_are_invalid_argument() {
    let gw = crate::spawn_gateway(crate::Options::default()).await;
    let mut grpc = GatewayServiceClient::connect(gw.url.clone()).await.unwrap();
    let (first, second) = (admin(), learner());
    let mut request = Request::new(GetCatalogPageRequest::default());
    for token in [&first, &second] {
        request
            .metadata_mut()
            .append("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let status = grpc.get_catalog_page(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("authorization"), "{status:?}");
    assert!(!status.message().contains(&first) && !status.message().contains(&second));
    // One entry is fine.
    let mut request = Request::new(GetCatalogPageRequest::default());
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {first}").parse().unwrap());
    assert!(grpc.get_catalog_page(request).await.is_ok());
}

#[tokio::test]
async fn every_token_rule_refuses_with_401_and_unauthenticated() {
    let (addr, _stop) = spawn_strict_gateway().await;
    let http = reqwest::Client::new();
    let mut grpc = GatewayServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let now = get_current_timestamp();
    let claims = |extra: Value| {
        let mut claims = json!({
            "sub": "7", "role": "learner", "iat": now, "exp": now + 600,
            "iss": ISSUER, "aud": AUDIENCE,
        });
        for (name, value) in extra.as_object().unwrap() {
            claims[name] = value.clone();
        }
        claims
    };
    let refused = [
        (
            "not valid yet",
            signed(
                &claims(json!({"nbf": now + 3600, "exp": now + 7200})),
                SECRET,
            ),
        ),
        (
            "wrong issuer",
            signed(&claims(json!({"iss": "https://evil.example"})), SECRET),
        ),
        (
            "no issuer",
            issue_token(SECRET, "7", Role::Learner, Duration::from_secs(600)).unwrap(),
        ),
        (
            "wrong audience",
            signed(&claims(json!({"aud": "billing"})), SECRET),
        ),
        (
            "lives too long",
            signed(&claims(json!({"exp": now + 25 * 3600})), SECRET),
        ),
        (
            "leading zero",
            signed(&claims(json!({"sub": "007"})), SECRET),
        ),
        ("signed sub", signed(&claims(json!({"sub": "+7"})), SECRET)),
        (
            "negative sub",
            signed(&claims(json!({"sub": "-1"})), SECRET),
        ),
        (
            "sub beyond i64",
            signed(&claims(json!({"sub": "9223372036854775808"})), SECRET),
        ),
        ("learner 0", signed(&claims(json!({"sub": "0"})), SECRET)),
        (
            "unknown secret",
            signed(&claims(json!({})), "an-unknown-secret-of-at-least-32-bytes"),
        ),
    ];
    for (case, token) in &refused {
        let response = http
            .get(format!("http://{addr}/v1/catalog"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "unauthenticated", "{case}: {body}");
        let message = body["message"].as_str().unwrap();
        for secret_text in [token.as_str(), SECRET, PREVIOUS] {
            assert!(!message.contains(secret_text), "{case}: {message}");
        }

        let status = grpc
            .get_catalog_page(with_token(GetCatalogPageRequest::default(), token))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{case}");
        assert!(!status.message().contains(token.as_str()), "{case}");
    }

    // The current and the previous secret both verify a token that follows the rules.
    for secret in [SECRET, PREVIOUS] {
        let token = issue_token_with(
            secret,
            "7",
            Role::Learner,
            Duration::from_secs(600),
            &strict_rules(),
        )
        .unwrap();
        let response = http
            .get(format!("http://{addr}/v1/catalog"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        grpc.get_catalog_page(with_token(GetCatalogPageRequest::default(), &token))
            .await
            .unwrap();
    }
}

fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}
