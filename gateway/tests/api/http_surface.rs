//! The HTTP surface (issue 10 §4): security headers, CORS, size limits with JSON answers, transport
//! failures as 503, gRPC bodies checked at the edge, reflection, and text that holds no control
//! or bidi-override characters.
use std::sync::atomic::Ordering;

use learnhub_kit::testing::grpc_web;
use learnhub_proto::{
    catalog::v1::{CourseType, CreateCourseRequest, ListCategoriesRequest, UpdateCourseRequest},
    gateway::v1::SubmitExerciseRequest,
};
use prost::Message;
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{Code, Request};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

use crate::{Options, TestGateway, admin, learner, spawn_gateway};
use gateway::edge::{EdgeConfig, ReflectionSwitch};

const APP: &str = "https://app.example.com";
const CATEGORIES_RPC: &str = "/learnhub.gateway.v1.GatewayService/ListCategories";

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|value| value.to_str().unwrap())
}

async fn with_edge(edge: EdgeConfig) -> TestGateway {
    spawn_gateway(Options {
        edge,
        enrollment: true,
        ..Options::default()
    })
    .await
}

fn cors(origins: &[&str]) -> EdgeConfig {
    EdgeConfig {
        cors_allowed_origins: origins.iter().map(|origin| (*origin).to_owned()).collect(),
        ..EdgeConfig::default()
    }
}

async fn error_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    assert_eq!(
        header(response.headers(), "content-type"),
        Some("application/json")
    );
    (status, response.json().await.unwrap())
}

/// The status of a gRPC-Web answer: in the headers when it is trailers-only, else in the
/// trailers frame at the end of the body.
async fn grpc_web_status(response: reqwest::Response) -> (String, String) {
    let headers = response.headers().clone();
    if let Some(code) = header(&headers, "grpc-status") {
        let message = header(&headers, "grpc-message").unwrap_or_default();
        return (code.to_owned(), message.to_owned());
    }
    let body = response.bytes().await.unwrap();
    let trailers = grpc_web::split_unary(&body).trailers;
    let field = |name: &str| {
        trailers
            .split("\r\n")
            .find_map(|line| line.strip_prefix(name))
            .unwrap_or_default()
            .to_owned()
    };
    (field("grpc-status:"), field("grpc-message:"))
}

#[tokio::test]
async fn every_rest_answer_carries_the_security_headers_and_no_hsts_by_default() {
    let gw = with_edge(EdgeConfig::default()).await;
    for path in [
        "/v1/categories",
        "/v1/courses/sql-joins",
        "/no/such/route",
        "/healthz",
    ] {
        let response = gw.get(path).send().await.unwrap();
        let headers = response.headers();
        assert_eq!(
            header(headers, "x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(
            header(headers, "referrer-policy"),
            Some("no-referrer"),
            "{path}"
        );
        assert_eq!(
            header(headers, "content-security-policy"),
            Some("default-src 'none'; frame-ancestors 'none'"),
            "{path}"
        );
        assert_eq!(header(headers, "x-frame-options"), Some("DENY"), "{path}");
        assert!(
            headers
                .get_all("vary")
                .iter()
                .any(|vary| vary.to_str().unwrap().contains("authorization")),
            "{path}: {headers:?}"
        );
        // Anonymous public answers may be cached; HSTS is off unless configured.
        assert_eq!(header(headers, "cache-control"), None, "{path}");
        assert_eq!(header(headers, "strict-transport-security"), None, "{path}");
        // No CORS unless configured.
        assert_eq!(header(headers, "access-control-allow-origin"), None);
    }
}

#[tokio::test]
async fn answers_to_authenticated_requests_are_not_stored() {
    let gw = with_edge(EdgeConfig::default()).await;
    for (path, token) in [
        ("/v1/catalog", learner()),
        ("/v1/me", learner()),
        ("/v1/admin/db/stats", admin()),
        ("/v1/categories", "not-a-token".to_owned()),
    ] {
        let response = gw.get(path).bearer_auth(&token).send().await.unwrap();
        assert_eq!(
            header(response.headers(), "cache-control"),
            Some("no-store"),
            "{path}: {}",
            response.status()
        );
    }
}

#[tokio::test]
async fn hsts_is_sent_only_when_configured() {
    let gw = with_edge(EdgeConfig {
        hsts_max_age_secs: Some(31_536_000),
        ..EdgeConfig::default()
    })
    .await;
    let response = gw.get("/v1/categories").send().await.unwrap();
    assert_eq!(
        header(response.headers(), "strict-transport-security"),
        Some("max-age=31536000")
    );
}

async fn preflight(gw: &TestGateway, path: &str, origin: &str) -> reqwest::Response {
    gw.http
        .request(Method::OPTIONS, format!("{}{path}", gw.url))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type, x-grpc-web, grpc-timeout",
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn without_configured_origins_there_are_no_cors_headers() {
    let gw = with_edge(EdgeConfig::default()).await;
    let response = preflight(&gw, "/v1/admin/courses", APP).await;
    assert_ne!(response.status(), StatusCode::NO_CONTENT);
    let cors_headers: Vec<_> = response
        .headers()
        .keys()
        .filter(|name| name.as_str().starts_with("access-control-"))
        .collect();
    assert!(cors_headers.is_empty(), "{cors_headers:?}");
}

#[tokio::test]
async fn preflights_are_answered_for_configured_origins_only() {
    let gw = with_edge(cors(&[APP, "http://localhost:3000"])).await;
    for path in ["/v1/admin/courses", CATEGORIES_RPC] {
        let response = preflight(&gw, path, APP).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{path}");
        let headers = response.headers();
        assert_eq!(header(headers, "access-control-allow-origin"), Some(APP));
        let methods = header(headers, "access-control-allow-methods").unwrap();
        for method in ["GET", "POST", "PATCH"] {
            assert!(methods.contains(method), "{methods}");
        }
        let allowed = header(headers, "access-control-allow-headers").unwrap();
        for name in [
            "authorization",
            "content-type",
            "x-grpc-web",
            "grpc-timeout",
        ] {
            assert!(allowed.contains(name), "{allowed}");
        }
        assert!(header(headers, "x-request-id").is_some());

        let refused = preflight(&gw, path, "https://evil.example").await;
        assert_eq!(refused.status(), StatusCode::NO_CONTENT);
        let allow: Vec<_> = refused
            .headers()
            .keys()
            .filter(|name| name.as_str().starts_with("access-control-allow"))
            .collect();
        assert!(allow.is_empty(), "{path}: {allow:?}");
    }
}

#[tokio::test]
async fn allowed_origins_may_read_rest_and_grpc_web_answers_and_others_may_not() {
    let gw = with_edge(cors(&[APP])).await;
    let rest = gw
        .get("/v1/categories")
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), StatusCode::OK);
    assert_eq!(
        header(rest.headers(), "access-control-allow-origin"),
        Some(APP)
    );
    let exposed = header(rest.headers(), "access-control-expose-headers").unwrap();
    for name in ["grpc-status", "grpc-message", "x-request-id"] {
        assert!(exposed.contains(name), "{exposed}");
    }
    let grpc_web = gw
        .post(CATEGORIES_RPC)
        .header("origin", APP)
        .header("content-type", grpc_web::CONTENT_TYPE)
        .header("x-grpc-web", "1")
        .body(grpc_web::frame(&ListCategoriesRequest {}.encode_to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(grpc_web.headers(), "access-control-allow-origin"),
        Some(APP)
    );
    assert_eq!(grpc_web_status(grpc_web).await.0, "0");

    let other = gw
        .get("/v1/categories")
        .header("origin", "https://app.example.com.evil")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);
    assert_eq!(header(other.headers(), "access-control-allow-origin"), None);
    assert_eq!(
        header(other.headers(), "access-control-expose-headers"),
        None
    );
}

#[tokio::test]
async fn a_wildcard_or_a_path_in_the_origin_list_stops_the_start() {
    for bad in ["*", "https://app.example.com/"] {
        let config = gateway::Config {
            near_cache: Default::default(),
            listen: "127.0.0.1:0".into(),
            catalog_addr: "http://127.0.0.1:1".into(),
            enrollment_addr: None,
            cache_addr: None,
            auth_jwt_secret: crate::SECRET.into(),
            upstream_timeout_ms: 100,
            stale_if_error_secs: gateway::DEFAULT_STALE_IF_ERROR_SECS,
            auth_jwt_previous_secrets: Vec::new(),
            auth_jwt_issuer: None,
            auth_jwt_audience: None,
            auth_max_token_hours: 24,
            limits: gateway::limits::LimitConfig::default(),
            edge: cors(&[bad]),
            tls: learnhub_kit::tls::TlsArgs::plaintext(),
        };
        let err = gateway::Application::build(&config).await.err().unwrap();
        assert!(err.to_string().contains("--cors-allowed-origins"), "{err}");
    }
}

#[tokio::test]
async fn an_oversize_json_body_is_413_with_a_json_body() {
    let gw = with_edge(EdgeConfig::default()).await;
    let huge = "x".repeat(gateway::MAX_REST_BODY_BYTES + 1);
    let response = gw
        .post("/v1/admin/courses")
        .bearer_auth(admin())
        .json(&json!({"slug": "a", "title": huge, "course_type": "python", "category": "b"}))
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(response).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["code"], "payload_too_large");
    assert!(body["message"].as_str().unwrap().contains("request body"));
}

#[tokio::test]
async fn a_long_uri_is_414_and_large_headers_431_with_json_bodies() {
    let gw = with_edge(EdgeConfig::default()).await;
    let long_path = format!("/v1/courses/{}", "a".repeat(gateway::MAX_URI_BYTES));
    let (status, body) = error_of(gw.get(&long_path).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::URI_TOO_LONG);
    assert_eq!(body["code"], "uri_too_long");

    let mut request = gw.get("/v1/categories");
    for i in 0..5 {
        request = request.header(format!("x-padding-{i}"), "p".repeat(8 * 1024));
    }
    let (status, body) = error_of(request.send().await.unwrap()).await;
    assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(body["code"], "headers_too_large");
}

/// Past hyper's own limits the gateway's code never runs: what hyper answers there, on raw TCP
/// (documented in the README).
#[tokio::test]
async fn past_hypers_own_limits_hyper_answers_431_with_an_empty_body() {
    let gw = with_edge(EdgeConfig::default()).await;
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let padding = "p".repeat(512 * 1024);
    let request = format!(
        "GET /v1/categories HTTP/1.1\r\nhost: gw\r\nx-padding: {padding}\r\nconnection: close\r\n\r\n"
    );
    // hyper may answer and close before reading all of it.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{answer}"
    );
    assert!(answer.contains("content-length: 0\r\n"), "{answer}");
}

#[tokio::test]
async fn an_upstream_that_drops_the_connection_is_503_never_500() {
    let gw = spawn_gateway(Options {
        catalog_resets: true,
        ..Options::default()
    })
    .await;
    let (status, body) = error_of(gw.get("/v1/categories").send().await.unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "unavailable");
    let err = gw
        .grpc()
        .await
        .list_categories(ListCategoriesRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
}

async fn grpc_web_call(gw: &TestGateway, path: &str, body: Vec<u8>) -> (String, String) {
    let response = gw
        .post(path)
        .header("content-type", grpc_web::CONTENT_TYPE)
        .header("x-grpc-web", "1")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    grpc_web_status(response).await
}

#[tokio::test]
async fn an_undecodable_message_is_invalid_argument_without_decoder_internals() {
    let gw = with_edge(EdgeConfig::default()).await;
    // Field 1 of GetCourseRequest (the id) sent as a string, then a truncated varint.
    for garbage in [vec![0x0a, 0x01, b'x'], vec![0xff, 0xff]] {
        let (code, message) = grpc_web_call(
            &gw,
            "/learnhub.gateway.v1.GatewayService/GetCourse",
            grpc_web::frame(&garbage),
        )
        .await;
        assert_eq!(code, "3", "{message}");
        let message = message.replace("%20", " ");
        assert_eq!(message, "request: not a valid GetCourseRequest message");
    }
}

#[tokio::test]
async fn a_unary_call_with_two_messages_is_refused() {
    let gw = with_edge(EdgeConfig::default()).await;
    let message = ListCategoriesRequest {}.encode_to_vec();
    let mut body = grpc_web::frame(&message);
    body.extend(grpc_web::frame(&message));
    let (code, message) = grpc_web_call(&gw, CATEGORIES_RPC, body).await;
    assert_eq!(code, "3", "{message}");
    assert!(message.contains("exactly%20one"), "{message}");
    // One message still works.
    let (code, _) = grpc_web_call(&gw, CATEGORIES_RPC, grpc_web::frame(&[])).await;
    assert_eq!(code, "0");
}

async fn channel(gw: &TestGateway) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(gw.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn listed_services(gw: &TestGateway) -> Result<Vec<String>, tonic::Status> {
    let mut client = ServerReflectionClient::new(channel(gw).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = client
        .server_reflection_info(futures::stream::iter([request]))
        .await?
        .into_inner();
    let answer = answers.message().await?.unwrap();
    match answer.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
            names.sort();
            Ok(names)
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn reflection_lists_only_the_gateways_own_services_and_can_be_turned_off() {
    let gw = with_edge(EdgeConfig::default()).await;
    assert_eq!(
        listed_services(&gw).await.unwrap(),
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            "learnhub.gateway.v1.GatewayService",
        ]
    );
    let off = with_edge(EdgeConfig {
        grpc_reflection: ReflectionSwitch::Off,
        ..EdgeConfig::default()
    })
    .await;
    assert_eq!(
        listed_services(&off).await.unwrap_err().code(),
        Code::Unimplemented
    );
}

#[tokio::test]
async fn the_definitions_of_internal_services_are_not_served_either() {
    let gw = with_edge(EdgeConfig::default()).await;
    let mut client = ServerReflectionClient::new(channel(&gw).await);
    let mut ask = async |symbol: &str| {
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(symbol.into())),
        };
        let answer = client
            .server_reflection_info(futures::stream::iter([request]))
            .await?
            .into_inner()
            .message()
            .await?;
        Ok::<_, tonic::Status>(answer.and_then(|answer| answer.message_response))
    };
    assert!(matches!(
        ask("learnhub.gateway.v1.GatewayService").await,
        Ok(Some(MessageResponse::FileDescriptorResponse(_)))
    ));
    for symbol in [
        "learnhub.catalog.v1.CatalogService",
        "learnhub.cache.v1.CacheService",
        "learnhub.enrollment.v1.EnrollmentService",
    ] {
        match ask(symbol).await {
            Err(status) => assert_eq!(status.code(), Code::NotFound, "{symbol}"),
            Ok(Some(MessageResponse::ErrorResponse(_))) => {}
            other => panic!("{symbol}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn rest_text_with_control_or_bidi_characters_is_400_naming_the_field() {
    let gw = with_edge(EdgeConfig::default()).await;
    for (body, field) in [
        (
            json!({"slug": "a", "title": "Intro\u{202E}txt.exe", "course_type": "python", "category": "b"}),
            "title",
        ),
        (
            json!({"slug": "a", "title": "Intro\u{0}", "course_type": "python", "category": "b"}),
            "title",
        ),
        (
            json!({"slug": "a", "title": "Intro", "summary": "ok\nbut\u{2066}hidden", "course_type": "python", "category": "b"}),
            "summary",
        ),
    ] {
        let response = gw
            .post("/v1/admin/courses")
            .bearer_auth(admin())
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, body) = error_of(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["code"], "invalid_argument");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{field}: must not contain")),
            "{body}"
        );
    }
    let response = gw
        .patch("/v1/admin/courses/2")
        .bearer_auth(admin())
        .json(&json!({"title": "Bell\u{7}"}))
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(gw.catalog.last_update.lock().unwrap().is_none());

    let response = gw
        .post("/v1/exercises/3/submissions")
        .bearer_auth(learner())
        .json(&json!({"code": "print(1)\u{0}"}))
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"].as_str().unwrap().starts_with("code: "),
        "{body}"
    );
    // Line controls are part of code.
    let response = gw
        .post("/v1/exercises/3/submissions")
        .bearer_auth(learner())
        .json(&json!({"code": "def f():\r\n\treturn 1\n"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

fn with_admin<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", admin()).parse().unwrap(),
    );
    request
}

#[tokio::test]
async fn grpc_text_with_control_or_bidi_characters_is_invalid_argument_naming_the_field() {
    let gw = with_edge(EdgeConfig::default()).await;
    let mut client = gw.grpc().await;
    let err = client
        .create_course(with_admin(CreateCourseRequest {
            slug: "a".into(),
            title: "Intro\u{202D}".into(),
            course_type: CourseType::Python.into(),
            category: "basics".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    learnhub_kit::testing::assert_status::<()>(Err(err), Code::InvalidArgument, "title");
    let err = client
        .update_course(with_admin(UpdateCourseRequest {
            id: 2,
            summary: Some("nul\u{0}".into()),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    learnhub_kit::testing::assert_status::<()>(Err(err), Code::InvalidArgument, "summary");
    assert!(gw.catalog.last_update.lock().unwrap().is_none());
    let mut request = Request::new(SubmitExerciseRequest {
        exercise_id: 3,
        code: "x = 1\u{2067}".into(),
        passed: false,
        score: 0,
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", learner()).parse().unwrap(),
    );
    let err = client.submit_exercise(request).await.unwrap_err();
    learnhub_kit::testing::assert_status::<()>(Err(err), Code::InvalidArgument, "code");
    assert_eq!(gw.catalog.list_calls.load(Ordering::SeqCst), 0);
}
