//! Property tests of the gateway's edge: caller tokens and `Authorization` headers, REST query
//! strings, path segments and JSON bodies, gRPC-Web framing and gRPC requests. Whatever arrives,
//! the gateway refuses it in a bounded answer of its own: never a panic, never a 500, never
//! INTERNAL or UNKNOWN, always a JSON body on a REST error.
//!
//! The router tests run a real gateway on port 0 whose catalog-svc address is a closed port and
//! whose other upstreams are not configured: a request the edge lets through is UNAVAILABLE (503),
//! so every answer is the edge's own.
// Set-up helpers outside the properties panic on purpose: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]
use std::{
    net::SocketAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use gateway::auth::{AuthError, Claims, DEFAULT_MAX_TOKEN_HOURS, Role, TokenVerifier, issue_token};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use learnhub_kit::{
    shutdown::CancellationToken,
    testing::grpc_web,
    validate::{self, MAX_SUMMARY_CHARS, MAX_TITLE_CHARS},
};
use learnhub_proto::{
    cache::v1::InvalidatePatternRequest,
    catalog::v1::{CreateCourseRequest, GetCourseRequest, get_course_request::Key},
    gateway::v1::{GetCatalogPageRequest, gateway_service_client::GatewayServiceClient},
};
use proptest::{
    prelude::*,
    test_runner::{Config, TestRunner},
};
use reqwest::StatusCode;
use serde_json::{Map, Value, json};
use tonic::{Code, metadata::MetadataValue, transport::Channel};

const SECRET: &str = "gateway-property-secret-of-at-least-32-bytes";
const OTHER_SECRET: &str = "another-secret-of-at-least-thirty-two-bytes";
/// The longest error message the edge may answer with, whatever the request's size.
const MAX_MESSAGE_BYTES: usize = 2048;
const SERVICE: &str = "/learnhub.gateway.v1.GatewayService";
/// `{"alg":"none","typ":"JWT"}`, URL-safe base64: the header of an unsigned token.
const ALG_NONE_HEADER: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";

fn config(cases: u32) -> Config {
    Config {
        cases,
        // A failing case is shrunk and printed; no regression files are written into the tree.
        failure_persistence: None,
        ..Config::default()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn verifier() -> TokenVerifier {
    TokenVerifier::new(SECRET).unwrap()
}

fn token(role: Role, subject: &str) -> String {
    issue_token(SECRET, subject, role, Duration::from_secs(600)).unwrap()
}

/// Characters edge parsers treat specially, mixed with any character at all.
fn edge_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => any::<char>(),
        4 => proptest::char::range('a', 'z'),
        2 => prop::sample::select(vec!['-', '0', '7', ' ', '.', ':', '*', '"', '\\', '%', '/', '?', '&', '=', '#']),
        2 => proptest::char::range('\0', '\u{1f}'),
        1 => proptest::char::range('\u{7f}', '\u{9f}'),
        2 => proptest::char::range('\u{202A}', '\u{202E}'),
        1 => proptest::char::range('\u{2066}', '\u{2069}'),
    ]
}

fn edge_string(max_chars: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(edge_char(), 0..=max_chars).prop_map(String::from_iter)
}

/// A refusal's text is short and does not quote the token it refuses.
fn assert_quiet_refusal(err: &AuthError, token: &str) -> Result<(), TestCaseError> {
    let message = err.to_string();
    prop_assert!(message.len() <= 200, "{message}");
    if token.len() >= 8 {
        prop_assert!(!message.contains(token), "{message} quotes {token:?}");
    }
    prop_assert!(!message.contains(SECRET));
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn any_authorization_header_is_refused_quietly(header in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        edge_string(100).prop_map(String::into_bytes),
        ("[bB][eE][aA][rR][eE][rR]", "[ \t]{0,3}", "[A-Za-z0-9_.=-]{0,200}")
            .prop_map(|(scheme, gap, token)| format!("{scheme}{gap}{token}").into_bytes()),
    ]) {
        match verifier().authenticate(Some(&header)) {
            Ok(caller) => prop_assert!(false, "{header:?} authenticated as {caller:?}"),
            Err(err) => {
                prop_assert!(!err.is_forbidden(), "{err}");
                assert_quiet_refusal(&err, &String::from_utf8_lossy(&header))?;
            }
        }
    }

    #[test]
    fn a_real_token_is_accepted_in_any_spelling_of_the_bearer_scheme(
        scheme in "[bB][eE][aA][rR][eE][rR]",
        before in " {0,3}",
        gap in " {1,3}",
        after in " {0,3}",
        user in 1..=i64::MAX,
        admin in any::<bool>(),
    ) {
        let role = if admin { Role::Admin } else { Role::Learner };
        let header = format!("{before}{scheme}{gap}{}{after}", token(role, &user.to_string()));
        let caller = verifier().authenticate(Some(header.as_bytes())).unwrap().unwrap();
        prop_assert_eq!(caller.user_id(), Some(user));
        prop_assert_eq!(caller.role, role);
    }

    #[test]
    fn a_tampered_token_is_refused(
        user in 1..=i64::MAX,
        edit in prop_oneof![
            (any::<prop::sample::Index>(), "[A-Za-z0-9_.=+/-]").prop_map(|(at, c)| Edit::Replace(at, c)),
            (any::<prop::sample::Index>(), "[A-Za-z0-9_.=+/ -]").prop_map(|(at, c)| Edit::Insert(at, c)),
            any::<prop::sample::Index>().prop_map(Edit::Delete),
            any::<prop::sample::Index>().prop_map(Edit::Truncate),
            Just(Edit::AlgNone),
            Just(Edit::OtherSecret),
            prop::sample::select(vec![Algorithm::HS384, Algorithm::HS512]).prop_map(Edit::Algorithm),
            Just(Edit::SwapCase),
        ],
    ) {
        let original = token(Role::Learner, &user.to_string());
        let tampered = edit.apply(&original, &user.to_string());
        prop_assume!(tampered != original);
        match verifier().verify(&tampered) {
            Ok(caller) => prop_assert!(false, "{tampered} ({edit:?}) accepted as {caller:?}"),
            Err(err) => assert_quiet_refusal(&err, &tampered)?,
        }
    }

    #[test]
    fn a_signed_token_is_accepted_exactly_when_its_claims_are_good(
        sub in prop_oneof![
            edge_string(12),
            "0|[1-9][0-9]{0,18}",
            "[+ 0-]?[0-9]{1,20}",
            Just(i64::MAX.to_string()),
        ],
        admin in any::<bool>(),
        // Offsets from now, kept well away from the 5-second leeway and the 24-hour maximum.
        exp in prop::sample::select(vec![-7200i64, -60, 60, 3600, 23 * 3600, 25 * 3600, 400 * 86400]),
        iat in prop::sample::select(vec![None, Some(-3600i64), Some(-2 * 86400), Some(3600)]),
        nbf in prop::sample::select(vec![None, Some(-60i64), Some(600)]),
    ) {
        let now = now();
        let at = |offset: i64| now.checked_add_signed(offset).unwrap();
        let role = if admin { Role::Admin } else { Role::Learner };
        let claims = Claims {
            sub: sub.clone(),
            role,
            exp: at(exp),
            iat: iat.map(at),
            nbf: nbf.map(at),
            iss: None,
            aud: None,
        };
        let token = sign(&claims, Algorithm::HS256, SECRET);
        let canonical = sub == "0"
            || (sub.bytes().all(|b| b.is_ascii_digit()) && !sub.starts_with('0'));
        let subject_ok = canonical
            && sub.parse::<i64>().is_ok_and(|id| id > 0 || (id == 0 && admin));
        let start = iat.map_or(0, |iat| iat.min(0));
        let lifetime_ok = exp - start <= (DEFAULT_MAX_TOKEN_HOURS * 3600) as i64;
        let good = exp > 0 && nbf.is_none_or(|nbf| nbf < 0) && lifetime_ok && subject_ok;
        match verifier().verify(&token) {
            Ok(caller) => {
                prop_assert!(good, "{claims:?} accepted");
                prop_assert_eq!(caller.subject, sub);
                prop_assert_eq!(caller.role, role);
            }
            Err(err) => {
                prop_assert!(!good, "{claims:?} refused: {err}");
                assert_quiet_refusal(&err, &token)?;
            }
        }
    }
}

/// One change to a real token.
#[derive(Debug, Clone)]
enum Edit {
    Replace(prop::sample::Index, String),
    Insert(prop::sample::Index, String),
    Delete(prop::sample::Index),
    Truncate(prop::sample::Index),
    /// The same claims under an unsigned `alg: none` header.
    AlgNone,
    /// The same claims signed with a secret the gateway does not know.
    OtherSecret,
    /// The same claims signed with the right secret under another algorithm.
    Algorithm(Algorithm),
    SwapCase,
}

impl Edit {
    fn apply(&self, token: &str, subject: &str) -> String {
        let (header, rest) = token.split_once('.').unwrap();
        let (payload, _) = rest.split_once('.').unwrap();
        let claims = Claims {
            sub: subject.to_owned(),
            role: Role::Learner,
            exp: now() + 600,
            iat: Some(now()),
            nbf: None,
            iss: None,
            aud: None,
        };
        match self {
            Edit::Replace(at, c) => {
                let at = at.index(token.len());
                format!("{}{c}{}", &token[..at], &token[at + 1..])
            }
            Edit::Insert(at, c) => {
                let at = at.index(token.len() + 1);
                format!("{}{c}{}", &token[..at], &token[at..])
            }
            Edit::Delete(at) => {
                let at = at.index(token.len());
                format!("{}{}", &token[..at], &token[at + 1..])
            }
            Edit::Truncate(at) => token[..at.index(token.len())].to_owned(),
            Edit::AlgNone => format!("{ALG_NONE_HEADER}.{payload}."),
            Edit::OtherSecret => sign(&claims, Algorithm::HS256, OTHER_SECRET),
            Edit::Algorithm(alg) => sign(&claims, *alg, SECRET),
            Edit::SwapCase => format!("{}.{rest}", header.to_ascii_uppercase()),
        }
    }
}

fn sign(claims: &Claims, alg: Algorithm, secret: &str) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::new(alg), claims, &key).unwrap()
}

/// A gateway on port 0 in front of a catalog-svc that is down, with its own runtime so the
/// synchronous property runner can drive it.
struct EdgeGateway {
    runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
    http: reqwest::Client,
    admin: String,
    shutdown: CancellationToken,
}

impl Drop for EdgeGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl EdgeGateway {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let shutdown = CancellationToken::new();
        let addr = runtime.block_on(async {
            let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let catalog_addr = format!("http://{}", closed.local_addr().unwrap());
            drop(closed);
            let config = gateway::Config {
                near_cache: Default::default(),
                listen: "127.0.0.1:0".into(),
                catalog_addr,
                enrollment_addr: None,
                cache_addr: None,
                auth_jwt_secret: SECRET.into(),
                upstream_timeout_ms: 2000,
                stale_if_error_secs: gateway::DEFAULT_STALE_IF_ERROR_SECS,
                auth_jwt_previous_secrets: Vec::new(),
                auth_jwt_issuer: None,
                auth_jwt_audience: None,
                auth_max_token_hours: DEFAULT_MAX_TOKEN_HOURS,
                // Hundreds of calls from one address: no rate limit may answer for the edge.
                limits: gateway::limits::LimitConfig::off(),
                edge: gateway::edge::EdgeConfig::default(),
                tls: learnhub_kit::tls::TlsArgs::plaintext(),
            };
            let app = gateway::Application::build(&config).await.unwrap();
            let addr = app.local_addr();
            tokio::spawn(app.run_until_stopped(shutdown.clone()));
            addr
        });
        Self {
            runtime,
            addr,
            http: reqwest::Client::new(),
            admin: token(Role::Admin, "1000"),
            shutdown,
        }
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    /// Runs `property` on `cases` values of `strategy`, panicking with the smallest failing one.
    fn check<S: Strategy>(
        &self,
        cases: u32,
        strategy: S,
        property: impl Fn(S::Value) -> Result<(), TestCaseError>,
    ) {
        if let Err(err) = TestRunner::new(config(cases)).run(&strategy, property) {
            panic!("{err}");
        }
    }

    /// Sends a REST request and checks the answer is not a 500 and, if an error, our JSON body;
    /// gives the status and the error message.
    fn rest(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, Option<String>), TestCaseError> {
        self.runtime.block_on(async {
            let response = request.send().await.unwrap();
            let status = response.status();
            let content_type = response
                .headers()
                .get("content-type")
                .map(|value| value.to_str().unwrap_or_default().to_owned());
            let body = response.bytes().await.unwrap();
            let shown = String::from_utf8_lossy(&body);
            prop_assert!(
                !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
                "{status}: {shown}"
            );
            if status.is_success() {
                return Ok((status, None));
            }
            prop_assert_eq!(
                content_type.as_deref(),
                Some("application/json"),
                "{}",
                status
            );
            let error: Value = serde_json::from_slice(&body)
                .map_err(|err| TestCaseError::fail(format!("{status}: {err}: {shown}")))?;
            prop_assert!(error["code"].is_string(), "{status}: {shown}");
            let message = error["message"].as_str().unwrap_or_default().to_owned();
            prop_assert!(!message.is_empty(), "{status}: {shown}");
            prop_assert!(
                message.len() <= MAX_MESSAGE_BYTES,
                "{status}: a message of {} bytes: {:.200}",
                message.len(),
                message
            );
            Ok((status, Some(message)))
        })
    }

    /// Sends a gRPC-Web call; gives its grpc-status and message, after checking it is one.
    fn grpc_web(
        &self,
        method: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(u32, String), TestCaseError> {
        self.runtime.block_on(async {
            let response = self
                .http
                .post(self.url(&format!("{SERVICE}/{method}")))
                .header("content-type", content_type)
                .header("x-grpc-web", "1")
                .header("authorization", format!("Bearer {}", self.admin))
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await.unwrap();
            prop_assert_eq!(status, StatusCode::OK, "{:?}", body);
            let (code, message) = grpc_web_status(&headers, &body)
                .ok_or_else(|| TestCaseError::fail(format!("no grpc-status in {body:?}")))?;
            let code = code
                .parse::<u32>()
                .map_err(|_| TestCaseError::fail(format!("grpc-status {code:?}")))?;
            prop_assert!(
                code != Code::Internal as u32 && code != Code::Unknown as u32,
                "{method}: grpc-status {code}: {message}"
            );
            prop_assert!(message.len() <= MAX_MESSAGE_BYTES * 3, "{message:.200}");
            Ok((code, message))
        })
    }
}

/// The status of a gRPC-Web answer: in the headers when it is trailers-only, else in the
/// trailers frame (flag 0x80) at the end of the body.
fn grpc_web_status(headers: &reqwest::header::HeaderMap, body: &[u8]) -> Option<(String, String)> {
    let header = |name: &str| {
        headers
            .get(name)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
    };
    if let Some(code) = header("grpc-status") {
        return Some((code, header("grpc-message").unwrap_or_default()));
    }
    let mut rest = body;
    while let Some((frame_header, after)) = rest.split_first_chunk::<5>() {
        let [flag, len @ ..] = *frame_header;
        let len = u32::from_be_bytes(len) as usize;
        let payload = after.get(..len)?;
        if flag == 0x80 {
            let trailers = String::from_utf8_lossy(payload);
            let field = |name: &str| {
                trailers
                    .split("\r\n")
                    .find_map(|line| line.strip_prefix(name))
                    .map(str::to_owned)
            };
            return Some((
                field("grpc-status:")?,
                field("grpc-message:").unwrap_or_default(),
            ));
        }
        rest = &after[len..];
    }
    None
}

/// Every byte outside the URL-unreserved set as `%XX`, so the URL says exactly these bytes.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Any JSON value, with the field names the request bodies know among arbitrary ones.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        edge_string(30).prop_map(Value::from),
        prop::sample::select(vec![
            "python",
            "sql",
            "beginner",
            "advanced",
            "intro-to-sql",
            "catalog:*"
        ])
        .prop_map(Value::from),
    ];
    let field = prop_oneof![
        3 => prop::sample::select(vec![
            "slug", "title", "summary", "course_type", "category", "level", "is_featured",
            "pattern", "course_id", "lesson_id", "completed", "code", "passed", "score", "status",
        ]).prop_map(str::to_owned),
        1 => edge_string(20),
        // A long unknown field name: does its refusal quote all of it?
        1 => (1usize..4000).prop_map(|len| "x".repeat(len)),
    ];
    leaf.prop_recursive(3, 32, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(field.clone(), inner, 0..8)
                .prop_map(|fields| Value::Object(Map::from_iter(fields))),
        ]
    })
}

/// A JSON body as bytes: any value, any object, a value cut short, or any bytes at all.
fn json_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        json_value().prop_map(|value| value.to_string().into_bytes()),
        (json_value(), any::<prop::sample::Index>()).prop_map(|(value, at)| {
            let mut bytes = value.to_string().into_bytes();
            bytes.truncate(at.index(bytes.len() + 1));
            bytes
        }),
        prop::collection::vec(any::<u8>(), 0..100),
        // Long words serde quotes back: an unknown field name, an unknown variant.
        (1usize..5000).prop_map(|len| json!({ "f".repeat(len): 1 }).to_string().into_bytes()),
        (1usize..5000).prop_map(|len| {
            let body =
                json!({"slug": "a", "title": "t", "course_type": "v".repeat(len), "category": "c"});
            body.to_string().into_bytes()
        }),
    ]
}

#[test]
fn json_bodies_are_answered_by_the_edge_never_by_a_500() {
    let gw = EdgeGateway::start();
    let routes = [
        ("POST", "/v1/admin/courses"),
        ("PATCH", "/v1/admin/courses/7"),
        ("POST", "/v1/admin/cache/invalidate"),
        ("POST", "/v1/enrollments"),
        ("POST", "/v1/enrollments/5/progress"),
        ("POST", "/v1/exercises/3/submissions"),
    ];
    let content_types = [
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("text/plain"),
        None,
    ];
    let strategy = (
        prop::sample::select(routes.to_vec()),
        prop::sample::select(content_types.to_vec()),
        json_body(),
    );
    gw.check(128, strategy, |((method, path), content_type, body)| {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = gw
            .http
            .request(method, gw.url(path))
            .bearer_auth(&gw.admin)
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let (status, _) = gw.rest(request)?;
        // Nothing is created: what the edge accepts meets an upstream that is down.
        prop_assert!(!status.is_success(), "{status}");
        Ok(())
    });
}

#[test]
fn a_course_body_is_refused_exactly_when_the_kit_refuses_one_of_its_fields() {
    let gw = EdgeGateway::start();
    let text = || {
        prop_oneof![
            "[a-z][a-z0-9-]{0,8}[a-z]",
            "[ -~]{0,20}",
            edge_string(20),
            (0..3usize, "[a-z]").prop_map(|(extra, c)| c.repeat(MAX_TITLE_CHARS - 1 + extra)),
            (0..3usize, "[a-z]").prop_map(|(extra, c)| c.repeat(MAX_SUMMARY_CHARS - 1 + extra)),
        ]
    };
    let strategy = (
        text(),
        text(),
        text(),
        text(),
        prop::sample::select(vec!["python", "sql"]),
    );
    gw.check(
        128,
        strategy,
        |(slug, title, summary, category, course_type)| {
            let body = json!({
                "slug": slug,
                "title": title,
                "summary": summary,
                "category": category,
                "course_type": course_type,
            });
            let request = gw
                .http
                .post(gw.url("/v1/admin/courses"))
                .bearer_auth(&gw.admin)
                .json(&body);
            let (status, message) = gw.rest(request)?;
            let refusal = validate::slug("slug", &slug)
                .and_then(|_| validate::title("title", &title, MAX_TITLE_CHARS))
                .and_then(|_| validate::text("summary", &summary, MAX_SUMMARY_CHARS))
                .and_then(|_| validate::slug("category", &category))
                .err();
            match refusal {
                Some(invalid) => {
                    prop_assert_eq!(status, StatusCode::BAD_REQUEST);
                    prop_assert_eq!(message, Some(invalid.to_string()));
                }
                None => prop_assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", message),
            }
            Ok(())
        },
    );
}

#[test]
fn query_strings_path_segments_and_headers_are_answered_by_the_edge() {
    let gw = EdgeGateway::start();
    let value = || prop_oneof![edge_string(40), "[0-9-]{0,12}", "python|sql|[a-z-]{1,10}"];
    let request = prop_oneof![
        (value(), value(), value(), value()).prop_map(|(course_type, category, size, token)| {
            format!(
                "/v1/catalog?type={}&category={}&page_size={}&page_token={}",
                percent_encode(&course_type),
                percent_encode(&category),
                percent_encode(&size),
                percent_encode(&token),
            )
        }),
        (edge_string(10), value()).prop_map(|(name, value)| {
            format!(
                "/v1/catalog?{}={}",
                percent_encode(&name),
                percent_encode(&value)
            )
        }),
        value().prop_map(|segment| format!("/v1/courses/{}", percent_encode(&segment))),
        value().prop_map(|segment| format!("/v1/admin/users/{}", percent_encode(&segment))),
        value()
            .prop_map(|segment| format!("/v1/admin/courses/{}/publish", percent_encode(&segment))),
        edge_string(30).prop_map(|path| format!("/{}", percent_encode(&path))),
    ];
    let authorization = prop_oneof![
        Just(None),
        // Any bytes a header value may hold (visible ASCII, space, tab and obs-text).
        prop::collection::vec(
            prop_oneof![0x20u8..=0x7e, Just(b'\t'), 0x80u8..=0xff],
            0..120,
        )
        .prop_map(Some),
    ];
    let method = prop::sample::select(vec!["GET", "POST", "PATCH", "DELETE"]);
    gw.check(
        160,
        (request, authorization, method),
        |(path, authorization, method)| {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let mut request = gw.http.request(method, gw.url(&path));
            if let Some(value) = &authorization {
                let value = reqwest::header::HeaderValue::from_bytes(value).unwrap();
                request = request.header("authorization", value);
            }
            let (status, message) = gw.rest(request)?;
            if authorization.is_some() && status == StatusCode::UNAUTHORIZED {
                // The refusal speaks of the token, never repeats it.
                let sent = String::from_utf8_lossy(authorization.as_deref().unwrap_or_default())
                    .into_owned();
                let message = message.unwrap_or_default();
                prop_assert!(
                    sent.trim().len() < 8 || !message.contains(sent.trim()),
                    "{message}"
                );
            }
            Ok(())
        },
    );
}

/// The methods of the gateway's service, and some it does not have.
const METHODS: &[&str] = &[
    "GetCatalogPage",
    "GetCourse",
    "ListCategories",
    "GetMe",
    "Enroll",
    "RecordProgress",
    "SubmitExercise",
    "CreateCourse",
    "UpdateCourse",
    "PublishCourse",
    "GetUser",
    "InvalidateCache",
    "GetDbStats",
    "NoSuchMethod",
    "",
];

/// A gRPC-Web body and whether it is exactly one uncompressed message frame.
fn grpc_web_body() -> impl Strategy<Value = (Vec<u8>, bool)> {
    let message = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..40),
        // Field tags and lengths that decode partly: the shapes a decoder trips on.
        prop::collection::vec(
            prop::sample::select(vec![
                0x08, 0x0a, 0x10, 0x12, 0x1a, 0x20, 0x01, 0x7f, 0x80, 0xff
            ]),
            0..20,
        ),
    ];
    prop_oneof![
        3 => message.clone().prop_map(|message| (grpc_web::frame(&message), true)),
        1 => prop::collection::vec(any::<u8>(), 0..30).prop_map(|bytes| {
            let one_frame = bytes.len() >= 5
                && bytes[0] == 0
                && u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize
                    == bytes.len() - 5;
            (bytes, one_frame)
        }),
        1 => (message.clone(), 1u8..=0xff).prop_map(|(message, flag)| {
            let mut body = grpc_web::frame(&message);
            body[0] = flag;
            (body, false)
        }),
        1 => (message.clone(), message.clone()).prop_map(|(first, second)| {
            let mut body = grpc_web::frame(&first);
            body.extend(grpc_web::frame(&second));
            (body, false)
        }),
        1 => (message, 1u32..=u32::MAX).prop_map(|(message, extra)| {
            // A length the body does not hold.
            let mut body = grpc_web::frame(&message);
            let len = (message.len() as u32).saturating_add(extra);
            body[1..5].copy_from_slice(&len.to_be_bytes());
            (body, false)
        }),
    ]
}

#[test]
fn grpc_web_framing_is_refused_as_invalid_argument_never_internal() {
    let gw = EdgeGateway::start();
    let strategy = (prop::sample::select(METHODS.to_vec()), grpc_web_body());
    gw.check(160, strategy, |(method, (body, one_frame))| {
        let (code, message) = gw.grpc_web(method, grpc_web::CONTENT_TYPE, body)?;
        let known = !matches!(method, "NoSuchMethod" | "");
        if known && !one_frame {
            prop_assert_eq!(
                code,
                Code::InvalidArgument as u32,
                "{}: {}",
                method,
                message
            );
        }
        Ok(())
    });
}

#[test]
fn grpc_web_text_bodies_are_never_internal() {
    let gw = EdgeGateway::start();
    let body = prop_oneof![
        "[A-Za-z0-9+/=]{0,60}",
        prop::collection::vec(any::<u8>(), 0..60)
            .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
    ];
    let strategy = (prop::sample::select(METHODS.to_vec()), body);
    gw.check(64, strategy, |(method, body)| {
        gw.grpc_web(method, "application/grpc-web-text", body.into_bytes())?;
        Ok(())
    });
}

#[test]
fn grpc_requests_of_any_content_are_never_internal() {
    let gw = EdgeGateway::start();
    let channel = gw.runtime.block_on(async {
        Channel::from_shared(gw.url(""))
            .unwrap()
            .connect()
            .await
            .unwrap()
    });
    let call = prop_oneof![
        (
            any::<i32>(),
            edge_string(40),
            prop_oneof![any::<i32>(), -2..110i32],
            edge_string(60)
        )
            .prop_map(
                |(course_type, category, page_size, page_token)| Call::CatalogPage(
                    GetCatalogPageRequest {
                        course_type,
                        category,
                        page_size,
                        page_token
                    }
                )
            ),
        prop_oneof![
            Just(None),
            any::<i64>().prop_map(|id| Some(Key::Id(id))),
            prop_oneof![edge_string(40), "[a-z0-9-]{0,210}"].prop_map(|slug| Some(Key::Slug(slug))),
        ]
        .prop_map(|key| Call::Course(GetCourseRequest { key })),
        (
            edge_string(20),
            edge_string(40),
            edge_string(40),
            any::<i32>()
        )
            .prop_map(|(slug, title, summary, course_type)| Call::CreateCourse(
                CreateCourseRequest {
                    slug,
                    title,
                    summary,
                    course_type,
                    category: "databases".into(),
                    level: 0,
                    is_featured: false,
                }
            )),
        edge_string(60).prop_map(|pattern| Call::Invalidate(InvalidatePatternRequest {
            pattern,
            relay: None
        })),
    ];
    let authorization = prop_oneof![
        Just(None),
        Just(Some(format!("Bearer {}", gw.admin))),
        "[ -~]{0,80}".prop_map(Some),
    ];
    gw.check(160, (call, authorization), |(call, authorization)| {
        let result = gw
            .runtime
            .block_on(call.clone().send(channel.clone(), authorization.as_deref()));
        let Err(status) = result else {
            return Err(TestCaseError::fail(format!("{call:?} succeeded")));
        };
        prop_assert!(
            !matches!(status.code(), Code::Internal | Code::Unknown),
            "{call:?}: {status:?}"
        );
        prop_assert!(status.message().len() <= MAX_MESSAGE_BYTES, "{status:?}");
        if let Call::CreateCourse(request) = &call {
            // The edge checks a new course's text characters; the rest goes upstream (down).
            let admin = authorization.is_some_and(|value| value.ends_with(&gw.admin));
            let text_ok = validate::single_line("title", &request.title).is_ok()
                && validate::multi_line("summary", &request.summary).is_ok();
            let expected = match (admin, text_ok) {
                (false, _) => status.code(),
                (true, false) => Code::InvalidArgument,
                (true, true) => Code::Unavailable,
            };
            prop_assert_eq!(status.code(), expected, "{:?}", status);
        }
        Ok(())
    });
}

/// One typed call to the gateway's gRPC service.
#[derive(Debug, Clone)]
enum Call {
    CatalogPage(GetCatalogPageRequest),
    Course(GetCourseRequest),
    CreateCourse(CreateCourseRequest),
    Invalidate(InvalidatePatternRequest),
}

impl Call {
    async fn send(
        self,
        channel: Channel,
        authorization: Option<&str>,
    ) -> Result<(), tonic::Status> {
        let mut client = GatewayServiceClient::new(channel);
        fn with<T>(message: T, authorization: Option<&str>) -> tonic::Request<T> {
            let mut request = tonic::Request::new(message);
            if let Some(value) = authorization.and_then(|value| MetadataValue::try_from(value).ok())
            {
                request.metadata_mut().insert("authorization", value);
            }
            request
        }
        match self {
            Call::CatalogPage(message) => client
                .get_catalog_page(with(message, authorization))
                .await
                .map(drop),
            Call::Course(message) => client
                .get_course(with(message, authorization))
                .await
                .map(drop),
            Call::CreateCourse(message) => client
                .create_course(with(message, authorization))
                .await
                .map(drop),
            Call::Invalidate(message) => client
                .invalidate_cache(with(message, authorization))
                .await
                .map(drop),
        }
    }
}

#[test]
fn known_refusals_are_json_errors_with_their_statuses() {
    // The harness itself: what the properties rely on `rest` to see.
    let gw = EdgeGateway::start();
    for (method, path, body, expected) in [
        (
            "GET",
            "/v1/catalog?page_size=0",
            None,
            StatusCode::BAD_REQUEST,
        ),
        ("GET", "/v1/courses/%00", None, StatusCode::BAD_REQUEST),
        (
            "POST",
            "/v1/admin/courses",
            Some("{"),
            StatusCode::BAD_REQUEST,
        ),
        ("GET", "/v1/nowhere", None, StatusCode::NOT_FOUND),
        (
            "DELETE",
            "/v1/catalog",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            "GET",
            "/v1/categories",
            None,
            StatusCode::SERVICE_UNAVAILABLE,
        ),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = gw.http.request(method, gw.url(path)).bearer_auth(&gw.admin);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let (status, message) = gw.rest(request).unwrap();
        assert_eq!(status, expected, "{path}: {message:?}");
        assert!(message.is_some(), "{path}");
    }
}
