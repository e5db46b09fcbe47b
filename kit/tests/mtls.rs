//! Mutual TLS between services through `server::serve_with_limits` and `client::connect`: who is
//! refused at the handshake, who gets PERMISSION_DENIED, and certificate rotation from files
//! without a restart, on both sides. The in-memory network (the monolith's) applies the same
//! policy and end-user rule to the service that dialled.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::{convert::Infallible, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use learnhub_kit::{
    client::{self, ClientOptions, ServiceChannel},
    enduser::{self, EndUser},
    limits::ServerLimits,
    memory::MemoryNetwork,
    server::{self, Listener, Running, Transport},
    shutdown::CancellationToken,
    tls::{CallerPolicy, DevCa, MutualTls, TlsArgs},
};
use tonic::{body::Body, server::NamedService, service::Routes};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tower::ServiceExt;

/// A service that answers OK to any method, naming the end user the call was made for (if the
/// server took one): the policy decides who gets there.
#[derive(Clone)]
struct Probe;

impl NamedService for Probe {
    const NAME: &'static str = "learnhub.test.v1.Probe";
}

impl tower::Service<http::Request<Body>> for Probe {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let user = request
            .extensions()
            .get::<EndUser>()
            .map(|user| format!("{}{}", user.id, if user.admin { " (admin)" } else { "" }))
            .unwrap_or_default();
        std::future::ready(Ok(tonic::Status::ok(user).into_http()))
    }
}

/// `Read` for the gateway and catalog-svc, anything else for the gateway only.
fn allowed(method: &str) -> &'static [&'static str] {
    match method {
        "Read" => &["gateway", "catalog-svc"],
        _ => &["gateway"],
    }
}

fn policy() -> CallerPolicy {
    CallerPolicy {
        callee: "cache-svc",
        allowed,
    }
}

async fn start(addr: &str, tls: Arc<MutualTls>) -> Running {
    let listener = Listener::from(server::bind(addr).await.unwrap());
    let transport = listener.transport(Some(tls), policy());
    serve_probe(listener, transport)
}

/// The probe served on `listener` under `transport`, until stopped.
fn serve_probe(listener: Listener, transport: Transport) -> Running {
    let stop = CancellationToken::new();
    let serving = stop.clone();
    let addr = match listener.local_addr() {
        Some(addr) => addr.to_string(),
        None => listener.url(),
    };
    Running::spawn(addr, stop, async move {
        server::serve_with_limits(
            listener,
            Routes::new(Probe),
            &[Probe::NAME],
            serving,
            &ServerLimits::default(),
            &transport,
        )
        .await
    })
}

fn addr_of(server: &Running) -> SocketAddr {
    server.addr.parse().unwrap()
}

fn channel(addr: SocketAddr, tls: Option<Arc<MutualTls>>) -> ServiceChannel {
    let options = ClientOptions::new(Duration::from_secs(3)).with_tls(tls);
    client::connect(
        "cache-svc",
        "--cache-addr",
        &format!("http://{addr}"),
        &options,
    )
    .unwrap()
}

/// The gRPC status of a call of `method` (the probe answers trailers-only, so it is in the head);
/// `Err` when the call did not get an answer at all.
async fn call<S>(channel: &S, method: &str) -> Result<(tonic::Code, String), String>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>> + Clone,
    S::Error: std::fmt::Display,
{
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("/{}/{method}", Probe::NAME))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Body::empty())
        .unwrap();
    let response = channel
        .clone()
        .oneshot(request)
        .await
        .map_err(|err| err.to_string())?;
    let status = tonic::Status::from_header_map(response.headers())
        .ok_or_else(|| "no grpc-status in the response head".to_owned())?;
    Ok((status.code(), status.message().to_owned()))
}

async fn health(addr: SocketAddr, tls: Option<Arc<MutualTls>>) -> Result<(), tonic::Status> {
    HealthClient::new(channel(addr, tls))
        .check(HealthCheckRequest::default())
        .await
        .map(drop)
}

#[tokio::test]
async fn a_caller_without_a_certificate_of_the_ca_is_refused_at_the_handshake() {
    let ca = DevCa::new().unwrap();
    let server = start("127.0.0.1:0", ca.identity("cache-svc").unwrap()).await;
    let addr = addr_of(&server);

    // Plaintext, and TLS with a certificate of another CA: no call gets through, not even health.
    assert!(health(addr, None).await.is_err(), "plaintext was served");
    let stranger = DevCa::new().unwrap();
    let (cert, key) = stranger.issue("gateway").unwrap();
    let foreign = MutualTls::from_pem(
        "gateway",
        cert.as_bytes(),
        key.as_bytes(),
        // It trusts the server's CA: only its own certificate is wrong.
        ca.ca_pem().as_bytes(),
    )
    .unwrap();
    assert!(health(addr, Some(foreign.clone())).await.is_err());
    assert!(call(&channel(addr, Some(foreign)), "Read").await.is_err());

    // A client that does not trust the server's CA does not call it either.
    let (cert, key) = ca.issue("gateway").unwrap();
    let misled = MutualTls::from_pem(
        "gateway",
        cert.as_bytes(),
        key.as_bytes(),
        stranger.ca_pem().as_bytes(),
    )
    .unwrap();
    assert!(health(addr, Some(misled)).await.is_err());

    // The gateway's certificate of the CA: served.
    health(addr, Some(ca.identity("gateway").unwrap()))
        .await
        .unwrap();
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_service_the_rpc_does_not_allow_gets_permission_denied() {
    let ca = DevCa::new().unwrap();
    let server = start("127.0.0.1:0", ca.identity("cache-svc").unwrap()).await;
    let gateway = channel(addr_of(&server), Some(ca.identity("gateway").unwrap()));
    let catalog = channel(addr_of(&server), Some(ca.identity("catalog-svc").unwrap()));

    assert_eq!(call(&gateway, "Write").await.unwrap().0, tonic::Code::Ok);
    assert_eq!(call(&gateway, "Read").await.unwrap().0, tonic::Code::Ok);
    assert_eq!(call(&catalog, "Read").await.unwrap().0, tonic::Code::Ok);
    let (code, message) = call(&catalog, "Write").await.unwrap();
    assert_eq!(code, tonic::Code::PermissionDenied);
    assert_eq!(message, "cache-svc does not take Write from catalog-svc");

    // A certificate of the CA that names no learnhub service: health only.
    let (cert, key) = ca.issue("somebody.example").unwrap();
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca.ca_pem()))
        .identity(tonic::transport::Identity::from_pem(cert, key))
        .domain_name("cache-svc");
    let nobody = tonic::transport::Endpoint::from_shared(format!("https://{}", addr_of(&server)))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let (code, message) = call(&nobody, "Read").await.unwrap();
    assert_eq!(code, tonic::Code::PermissionDenied);
    assert!(message.contains("naming no learnhub service"), "{message}");
    HealthClient::new(nobody)
        .check(HealthCheckRequest::default())
        .await
        .unwrap();
    server.stop().await.unwrap();
}

/// The end user travels from the gateway's scope to the service; a service that is not the
/// gateway cannot name one.
#[tokio::test]
async fn the_gateway_names_the_end_user_and_nobody_else_can() {
    let ca = DevCa::new().unwrap();
    let server = start("127.0.0.1:0", ca.identity("cache-svc").unwrap()).await;
    let gateway = channel(addr_of(&server), Some(ca.identity("gateway").unwrap()));
    let catalog = channel(addr_of(&server), Some(ca.identity("catalog-svc").unwrap()));

    let named = enduser::scope(EndUser::learner("42"), call(&gateway, "Read"))
        .await
        .unwrap();
    assert_eq!(named, (tonic::Code::Ok, "42".to_owned()));
    let admin = enduser::scope(EndUser::admin("1"), call(&gateway, "Read"))
        .await
        .unwrap();
    assert_eq!(admin, (tonic::Code::Ok, "1 (admin)".to_owned()));
    let anonymous = call(&gateway, "Read").await.unwrap();
    assert_eq!(anonymous, (tonic::Code::Ok, String::new()));
    let claimed = enduser::scope(EndUser::learner("42"), call(&catalog, "Read"))
        .await
        .unwrap();
    assert_eq!(
        claimed,
        (tonic::Code::Ok, String::new()),
        "only the gateway names the user"
    );
    server.stop().await.unwrap();
}

/// On the in-memory network the caller is the service that dialled: the same policy and the same
/// end-user rule as over mutual TLS, and an address of that network means nothing to a client
/// that is not on it.
#[tokio::test]
async fn in_memory_the_service_that_dialled_is_the_caller() {
    let network = MemoryNetwork::new();
    let listener = Listener::bind("unused", Some(&network.endpoint("cache-svc")))
        .await
        .unwrap();
    assert_eq!(listener.url(), "memory://cache-svc");
    assert_eq!(listener.local_addr(), None);
    let transport = listener.transport(None, policy());
    assert!(matches!(transport, Transport::InMemory { .. }));
    let server = serve_probe(listener, transport);
    let dial = |caller: &'static str| {
        let options =
            ClientOptions::new(Duration::from_secs(3)).with_memory(Some(network.endpoint(caller)));
        client::connect("cache-svc", "--cache-addr", "memory://cache-svc", &options).unwrap()
    };
    let (gateway, catalog, enrollment) =
        (dial("gateway"), dial("catalog-svc"), dial("enrollment-svc"));

    assert_eq!(call(&gateway, "Write").await.unwrap().0, tonic::Code::Ok);
    assert_eq!(call(&catalog, "Read").await.unwrap().0, tonic::Code::Ok);
    let (code, message) = call(&catalog, "Write").await.unwrap();
    assert_eq!(code, tonic::Code::PermissionDenied);
    assert_eq!(message, "cache-svc does not take Write from catalog-svc");
    let (code, _) = call(&enrollment, "Read").await.unwrap();
    assert_eq!(code, tonic::Code::PermissionDenied);
    HealthClient::new(enrollment)
        .check(HealthCheckRequest::default())
        .await
        .unwrap();

    let named = enduser::scope(EndUser::learner("42"), call(&gateway, "Read"))
        .await
        .unwrap();
    assert_eq!(named, (tonic::Code::Ok, "42".to_owned()));
    let claimed = enduser::scope(EndUser::learner("42"), call(&catalog, "Read"))
        .await
        .unwrap();
    assert_eq!(claimed, (tonic::Code::Ok, String::new()));

    // Off the network, the address is refused when the client is made.
    let stranger = ClientOptions::new(Duration::from_secs(1));
    let refused =
        client::connect("cache-svc", "--cache-addr", "memory://cache-svc", &stranger).unwrap_err();
    assert!(refused.reason.contains("in-memory"), "{refused}");
    // A service of the network that does not listen: the call fails, it does not hang.
    let nowhere =
        ClientOptions::new(Duration::from_secs(1)).with_memory(Some(network.endpoint("gateway")));
    let nowhere = client::connect(
        "catalog-svc",
        "--catalog-addr",
        "memory://catalog-svc",
        &nowhere,
    )
    .unwrap();
    let failed = call(&nowhere, "Read").await;
    assert!(failed.is_err(), "{failed:?}");
    server.stop().await.unwrap();
}

struct Files {
    dir: PathBuf,
}

impl Files {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("learnhub-mtls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    /// Writes `service`'s certificate and key from `ca`, and `ca` as the CA, as a rotation would.
    fn write(&self, service: &str, ca: &DevCa) {
        let (cert, key) = ca.issue(service).unwrap();
        for (file, text) in [("tls.crt", cert), ("tls.key", key), ("ca.crt", ca.ca_pem())] {
            // Written aside and renamed, as kubelet swaps a Secret volume.
            let aside = self.dir.join(format!(".{file}"));
            std::fs::write(&aside, text).unwrap();
            std::fs::rename(&aside, self.dir.join(file)).unwrap();
        }
    }

    fn args(&self) -> TlsArgs {
        let path = |file: &str| Some(self.dir.join(file));
        TlsArgs {
            tls_cert_file: path("tls.crt"),
            tls_key_file: path("tls.key"),
            tls_ca_file: path("ca.crt"),
            insecure_plaintext: false,
            tls_reload_secs: 1,
            identity: None,
            memory: None,
        }
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn rotated(tls: &MutualTls) {
    let mut changes = tls.changes();
    tokio::time::timeout(Duration::from_secs(10), changes.changed())
        .await
        .expect("the new files are picked up within a few seconds")
        .unwrap();
}

/// Both ends move to a new CA by rewriting their files: no restart of the client, whose channel
/// reconnects with its new certificate.
#[tokio::test]
async fn certificates_rotate_from_files_without_a_restart() {
    let (old_ca, new_ca) = (DevCa::new().unwrap(), DevCa::new().unwrap());
    let (server_files, client_files) = (Files::new("server"), Files::new("client"));
    server_files.write("cache-svc", &old_ca);
    client_files.write("gateway", &old_ca);
    let server_tls = server_files.args().load("cache-svc").unwrap().unwrap();
    let client_tls = client_files.args().load("gateway").unwrap().unwrap();

    let first = start("127.0.0.1:0", server_tls.clone()).await;
    let addr = addr_of(&first);
    let gateway = channel(addr, Some(client_tls.clone()));
    assert_eq!(call(&gateway, "Write").await.unwrap().0, tonic::Code::Ok);
    first.stop().await.unwrap();

    // The server's files move to the new CA; its watcher takes them without being asked.
    server_files.write("cache-svc", &new_ca);
    rotated(&server_tls).await;
    let second = start(&addr.to_string(), server_tls.clone()).await;
    // The client still shows the old CA's certificate: refused.
    assert!(call(&gateway, "Write").await.is_err());

    client_files.write("gateway", &new_ca);
    rotated(&client_tls).await;
    let mut answered = call(&gateway, "Write").await;
    for _ in 0..20 {
        if answered.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        answered = call(&gateway, "Write").await;
    }
    assert_eq!(answered.unwrap().0, tonic::Code::Ok);

    // A broken file is logged and the certificate in use kept.
    std::fs::write(client_files.dir.join("tls.crt"), "not a certificate").unwrap();
    assert!(client_tls.reload().is_err());
    assert_eq!(call(&gateway, "Write").await.unwrap().0, tonic::Code::Ok);
    second.stop().await.unwrap();
}
