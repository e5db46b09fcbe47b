//! Mutual TLS between the services, and which service may call which RPC.
//!
//! Every internal hop (gateway → catalog-svc / enrollment-svc, enrollment-svc → catalog-svc,
//! every service → cache-svc) runs over TLS 1.2/1.3 where both ends show a certificate signed by
//! the platform's CA. A service's certificate names the service (DNS SAN `catalog-svc`, plus
//! whatever Kubernetes names it answers to): the client checks the server against the callee's
//! name, and the server learns who calls from the client's certificate ([`Peer`]). A caller
//! without a certificate is refused at the handshake; a caller with a certificate of a service the
//! RPC does not allow gets `PERMISSION_DENIED` ([`CallerPolicyLayer`]).
//!
//! Certificates are read from files ([`TlsArgs`]) and read again when the files change, so
//! cert-manager's rotation (a Secret volume swapped atomically) needs no restart: new
//! connections use the new certificate, a bad new file is logged and the old one kept. Plaintext
//! is only for local development, and only when asked for by name (`--insecure-plaintext`).
use std::{
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, RwLock, Weak},
    task::{Context, Poll},
    time::{Duration, SystemTime},
};

use futures::{Stream, StreamExt, future::BoxFuture};
use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
    server::WebPkiClientVerifier,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::{mpsc, watch},
};
use tonic::{
    body::Body,
    transport::{
        Certificate, ClientTlsConfig, Identity,
        server::{Connected, TcpConnectInfo},
    },
};
use tower::{Layer, Service};

use crate::{limits::LogThrottle, memory::MemoryEndpoint};

/// The names a learnhub certificate may carry, one per service; a peer is the first of them its
/// certificate is valid for.
pub const SERVICES: [&str; 4] = ["gateway", "catalog-svc", "enrollment-svc", "cache-svc"];

/// How long a client has to finish its TLS handshake before the connection is closed (a peer
/// that opens connections and never speaks must not hold them).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const ACCEPTED_BACKLOG: usize = 128;
/// How often the certificate files are checked for a change, by default (kubelet refreshes a
/// Secret volume within about a minute anyway).
const RELOAD_EVERY: Duration = Duration::from_secs(10);
const LOG_EVERY: Duration = Duration::from_secs(10);
static HANDSHAKE_LOG: LogThrottle = LogThrottle::new(LOG_EVERY);
static DENIED_LOG: LogThrottle = LogThrottle::new(LOG_EVERY);

/// How a service proves who it is to the others, and checks who calls it. Every flag also reads
/// its environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsArgs {
    /// PEM certificate chain of this service, signed by the CA of --tls-ca-file and valid for
    /// the service's name (DNS SAN `catalog-svc`, ...). Read again when the file changes.
    #[arg(long, env = "TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert-file (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// PEM certificate(s) of the CA that signs every learnhub service's certificate: callers
    /// and callees must chain to it.
    #[arg(long, env = "TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// Serve and call the other services without TLS: nobody is authenticated and every caller
    /// may call every RPC. For local development only; without it, a service refuses to start
    /// with no certificate.
    #[arg(long, env = "INSECURE_PLAINTEXT")]
    pub insecure_plaintext: bool,
    /// How often the three files are checked for a change (seconds).
    #[arg(long, env = "TLS_RELOAD_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub tls_reload_secs: u64,
    /// An identity made in memory (tests' own CA): used as it is, no file read.
    #[arg(skip)]
    pub identity: Option<Arc<MutualTls>>,
    /// The service's place on the process's in-memory network (the monolith): it listens there
    /// instead of on a port, its `memory://` callees are dialled there, and no TLS is needed
    /// (only the process can dial, and each connection knows which service did).
    #[arg(skip)]
    pub memory: Option<MemoryEndpoint>,
}

impl Default for TlsArgs {
    fn default() -> Self {
        Self {
            tls_cert_file: None,
            tls_key_file: None,
            tls_ca_file: None,
            insecure_plaintext: false,
            tls_reload_secs: RELOAD_EVERY.as_secs(),
            identity: None,
            memory: None,
        }
    }
}

impl TlsArgs {
    /// Plaintext, asked for by name (tests and the development set-ups).
    pub fn plaintext() -> Self {
        Self {
            insecure_plaintext: true,
            ..Self::default()
        }
    }

    /// Mutual TLS with an identity made in memory ([`DevCa::identity`]).
    pub fn with_identity(identity: Arc<MutualTls>) -> Self {
        Self {
            identity: Some(identity),
            ..Self::default()
        }
    }

    /// No port and no TLS: the service listens and calls on the process's in-memory network.
    pub fn on_memory(memory: MemoryEndpoint) -> Self {
        Self {
            memory: Some(memory),
            ..Self::default()
        }
    }

    /// Reads the certificate of `service` and starts watching its files (when called inside a
    /// tokio runtime); `None` when plaintext or the in-memory network was asked for.
    pub fn load(&self, service: &'static str) -> Result<Option<Arc<MutualTls>>, TlsError> {
        if let Some(memory) = &self.memory {
            if memory.service() != service {
                return Err(invalid("in-memory endpoint")(format!(
                    "it belongs to {}, not {service}",
                    memory.service()
                )));
            }
            return Ok(None);
        }
        if let Some(identity) = &self.identity {
            if identity.service() != service {
                return Err(invalid("TLS identity")(format!(
                    "it belongs to {}, not {service}",
                    identity.service()
                )));
            }
            return Ok(Some(identity.clone()));
        }
        let files = [
            ("TLS_CERT_FILE", &self.tls_cert_file),
            ("TLS_KEY_FILE", &self.tls_key_file),
            ("TLS_CA_FILE", &self.tls_ca_file),
        ];
        let given = files.iter().filter(|(_, path)| path.is_some()).count();
        match (given, self.insecure_plaintext) {
            (0, true) => return Ok(None),
            (0, false) => return Err(TlsError::Missing { service }),
            (_, true) => return Err(TlsError::Conflict),
            _ => {}
        }
        if let Some((missing, _)) = files.iter().find(|(_, path)| path.is_none()) {
            return Err(TlsError::Incomplete { missing });
        }
        let files = TlsFiles {
            cert: self.tls_cert_file.clone().unwrap_or_default(),
            key: self.tls_key_file.clone().unwrap_or_default(),
            ca: self.tls_ca_file.clone().unwrap_or_default(),
        };
        let tls = MutualTls::from_files(service, files)?;
        tls.watch(Duration::from_secs(self.tls_reload_secs.max(1)));
        Ok(Some(tls))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "{service} has no certificate for its calls to and from the other services: set \
         TLS_CERT_FILE, TLS_KEY_FILE and TLS_CA_FILE (--tls-cert-file, --tls-key-file, \
         --tls-ca-file; deploy/dev-certs.sh makes a development set), or pass \
         --insecure-plaintext (INSECURE_PLAINTEXT=true) to run without authentication, for \
         local development only"
    )]
    Missing { service: &'static str },
    #[error("{missing} is not set: mutual TLS needs TLS_CERT_FILE, TLS_KEY_FILE and TLS_CA_FILE")]
    Incomplete { missing: &'static str },
    #[error("--insecure-plaintext and TLS files are both set: choose one")]
    Conflict,
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
}

fn invalid(what: impl Into<String>) -> impl FnOnce(String) -> TlsError {
    let what = what.into();
    move |reason| TlsError::Invalid { what, reason }
}

#[derive(Debug, Clone)]
struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

/// What identifies a file's version: a Kubernetes Secret volume swaps a symlink, so the path
/// stays and what it points at changes.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// One version of a service's certificate, key and CA.
struct Loaded {
    server: Arc<ServerConfig>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    ca_pem: Vec<u8>,
    stamps: [Stamp; 3],
}

/// A service's certificate, key and CA, current as of the last reload: the server side of every
/// internal listener ([`accept`]) and the client side of every channel to another service
/// (`ClientOptions::tls`).
pub struct MutualTls {
    service: &'static str,
    files: Option<TlsFiles>,
    current: RwLock<Arc<Loaded>>,
    /// Bumped at every reload, so long-lived channels reconnect with the new certificate.
    generation: watch::Sender<u64>,
}

impl std::fmt::Debug for MutualTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MutualTls")
            .field("service", &self.service)
            .field("files", &self.files)
            .field("generation", &*self.generation.borrow())
            .finish()
    }
}

impl MutualTls {
    /// `service`'s identity from PEM text (certificates made in memory; never reloaded).
    pub fn from_pem(
        service: &'static str,
        cert_pem: &[u8],
        key_pem: &[u8],
        ca_pem: &[u8],
    ) -> Result<Arc<Self>, TlsError> {
        let loaded = Loaded::parse(service, cert_pem, key_pem, ca_pem, [None; 3])?;
        Ok(Self::new(service, None, loaded))
    }

    fn from_files(service: &'static str, files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let loaded = Loaded::read(service, &files)?;
        Ok(Self::new(service, Some(files), loaded))
    }

    fn new(service: &'static str, files: Option<TlsFiles>, loaded: Loaded) -> Arc<Self> {
        Arc::new(Self {
            service,
            files,
            current: RwLock::new(Arc::new(loaded)),
            generation: watch::Sender::new(0),
        })
    }

    /// The service this identity belongs to.
    pub fn service(&self) -> &'static str {
        self.service
    }

    fn current(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The server side: this service's certificate, and every client must show one of the CA's.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.current().server.clone()
    }

    /// The client side of a channel to `callee` (a name of [`SERVICES`]): the callee's
    /// certificate must be valid for that name, and this service shows its own.
    pub fn client_config(&self, callee: &str) -> ClientTlsConfig {
        let loaded = self.current();
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&loaded.ca_pem))
            .identity(Identity::from_pem(&loaded.cert_pem, &loaded.key_pem))
            .domain_name(callee)
            .timeout(HANDSHAKE_TIMEOUT)
    }

    /// Changes at every reload that took a new certificate.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Reads the files again if any of them changed: `Ok(true)` when the new certificate is in
    /// use, `Ok(false)` when nothing changed (or the identity was not read from files), `Err`
    /// when the new files are unusable (the old certificate stays).
    pub fn reload(&self) -> Result<bool, TlsError> {
        let Some(files) = &self.files else {
            return Ok(false);
        };
        let now = [stamp(&files.cert), stamp(&files.key), stamp(&files.ca)];
        if now == self.current().stamps {
            return Ok(false);
        }
        let loaded = Loaded::read(self.service, files)?;
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(loaded);
        self.generation.send_modify(|generation| *generation += 1);
        Ok(true)
    }

    /// Checks the files every `every` on a task of its own, which ends with the last user of
    /// this identity. Outside a tokio runtime nothing is watched.
    fn watch(self: &Arc<Self>, every: Duration) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak: Weak<Self> = Arc::downgrade(self);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(tls) = weak.upgrade() else { return };
                match tls.reload() {
                    Ok(true) => tracing::info!(
                        service = tls.service,
                        "certificate files changed: new connections use the new certificate"
                    ),
                    Ok(false) => {}
                    Err(err) => tracing::warn!(
                        service = tls.service,
                        %err,
                        "certificate files changed but cannot be used; keeping the old certificate"
                    ),
                }
            }
        });
    }
}

impl Loaded {
    fn read(service: &'static str, files: &TlsFiles) -> Result<Self, TlsError> {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.clone(),
                source,
            })
        };
        // Stamped before reading: a change while reading is seen at the next check.
        let stamps = [stamp(&files.cert), stamp(&files.key), stamp(&files.ca)];
        Self::parse(
            service,
            &read(&files.cert)?,
            &read(&files.key)?,
            &read(&files.ca)?,
            stamps,
        )
    }

    fn parse(
        service: &'static str,
        cert_pem: &[u8],
        key_pem: &[u8],
        ca_pem: &[u8],
        stamps: [Stamp; 3],
    ) -> Result<Self, TlsError> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| invalid("TLS_CERT_FILE")(err.to_string()))?;
        let leaf = chain
            .first()
            .ok_or_else(|| invalid("TLS_CERT_FILE")("holds no certificate".into()))?;
        if !valid_for(leaf, service) {
            return Err(invalid("TLS_CERT_FILE")(format!(
                "the certificate is not valid for {service} (its DNS SAN must name the service)"
            )));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|err| invalid("TLS_KEY_FILE")(err.to_string()))?;
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(ca_pem) {
            let ca = ca.map_err(|err| invalid("TLS_CA_FILE")(err.to_string()))?;
            roots
                .add(ca)
                .map_err(|err| invalid("TLS_CA_FILE")(err.to_string()))?;
        }
        if roots.is_empty() {
            return Err(invalid("TLS_CA_FILE")("holds no certificate".into()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|err| invalid("TLS_CA_FILE")(err.to_string()))?;
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| invalid("TLS")(err.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|err| invalid("TLS_CERT_FILE and TLS_KEY_FILE")(err.to_string()))?;
        server.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            server: Arc::new(server),
            cert_pem: cert_pem.to_vec(),
            key_pem: key_pem.to_vec(),
            ca_pem: ca_pem.to_vec(),
            stamps,
        })
    }
}

/// Whether `cert` (already verified against the CA) names `service`.
fn valid_for(cert: &CertificateDer<'_>, service: &'static str) -> bool {
    webpki::EndEntityCert::try_from(cert).is_ok_and(|cert| names(&cert, service))
}

fn names(cert: &webpki::EndEntityCert<'_>, service: &'static str) -> bool {
    ServerName::try_from(service)
        .is_ok_and(|name| cert.verify_is_valid_for_subject_name(&name).is_ok())
}

/// The service a verified peer certificate names, if any (the certificate parsed once).
fn service_of(cert: &CertificateDer<'_>) -> Option<&'static str> {
    let cert = webpki::EndEntityCert::try_from(cert).ok()?;
    SERVICES.into_iter().find(|service| names(&cert, service))
}

/// Who is at the other end of an internal connection: in the extensions of every request that
/// came over [`accept`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The service its certificate names; `None` for a certificate of the CA that names none.
    pub service: Option<&'static str>,
    pub remote_addr: Option<SocketAddr>,
}

/// A connection after a successful handshake, knowing its [`Peer`].
pub struct Secured<IO> {
    stream: tokio_rustls::server::TlsStream<IO>,
    peer: Peer,
}

impl<IO> Connected for Secured<IO>
where
    IO: Connected<ConnectInfo = TcpConnectInfo>,
{
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Secured<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Secured<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The TLS side of a listener: every accepted connection does its handshake on a task of its
/// own (so a slow or silent client holds up nobody else) under a deadline, with the current
/// certificate; the ones that show a certificate of the CA come out, knowing their [`Peer`].
/// Dropping the stream stops accepting and closes the listener.
pub fn accept<I, IO>(
    incoming: I,
    tls: Arc<MutualTls>,
) -> impl Stream<Item = io::Result<Secured<IO>>> + Send + 'static
where
    I: Stream<Item = io::Result<IO>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Connected<ConnectInfo = TcpConnectInfo> + Unpin + Send + 'static,
{
    let (accepted, taken) = mpsc::channel(ACCEPTED_BACKLOG);
    tokio::spawn(async move {
        let mut incoming = std::pin::pin!(incoming);
        loop {
            let next = tokio::select! {
                () = accepted.closed() => return,
                next = incoming.next() => next,
            };
            let io = match next {
                None => return,
                Some(Ok(io)) => io,
                Some(Err(err)) => {
                    if accepted.send(Err(err)).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config());
            let accepted = accepted.clone();
            let service = tls.service;
            tokio::spawn(async move {
                let remote_addr = io.connect_info().remote_addr();
                let refused = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io))
                    .await
                {
                    Ok(Ok(stream)) => {
                        let peer = Peer {
                            service: stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|certs| certs.first())
                                .and_then(service_of),
                            remote_addr,
                        };
                        let _ = accepted.send(Ok(Secured { stream, peer })).await;
                        return;
                    }
                    // Connected and closed without a word: a port check, not an attack.
                    Ok(Err(err)) if err.kind() == io::ErrorKind::UnexpectedEof => {
                        tracing::debug!(service, peer = ?remote_addr, "connection closed before a TLS handshake");
                        return;
                    }
                    Ok(Err(err)) => err.to_string(),
                    Err(_) => format!("no handshake within {} s", HANDSHAKE_TIMEOUT.as_secs()),
                };
                if let Some(suppressed) = HANDSHAKE_LOG.admit() {
                    tracing::warn!(
                        service,
                        peer = ?remote_addr,
                        reason = %refused,
                        suppressed,
                        "TLS handshake refused"
                    );
                }
            });
        }
    });
    futures::stream::unfold(taken, |mut taken| async move {
        taken.recv().await.map(|item| (item, taken))
    })
}

/// Which services may call an RPC of a server: `allowed(method)` gets the method's name
/// (`CreateCourse`) and answers with the services allowed. Health and reflection are open to
/// every peer with a certificate of the CA.
#[derive(Debug, Clone, Copy)]
pub struct CallerPolicy {
    /// The server's own name, for messages.
    pub callee: &'static str,
    pub allowed: fn(&str) -> &'static [&'static str],
}

impl CallerPolicy {
    /// `Ok` when `peer` may call `path` (`/package.Service/Method`), else the status to answer.
    pub fn check(&self, peer: Option<&Peer>, path: &str) -> Result<(), tonic::Status> {
        let Some(peer) = peer else {
            // Not from a TLS listener: the server runs in plaintext, which was asked for by name.
            return Ok(());
        };
        let (service, method) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or((path, ""));
        if service.starts_with("grpc.health.") || service.starts_with("grpc.reflection.") {
            return Ok(());
        }
        let caller = peer
            .service
            .unwrap_or("a certificate naming no learnhub service");
        if peer
            .service
            .is_some_and(|caller| (self.allowed)(method).contains(&caller))
        {
            return Ok(());
        }
        if let Some(suppressed) = DENIED_LOG.admit() {
            tracing::warn!(
                callee = self.callee,
                caller,
                method,
                peer = ?peer.remote_addr,
                suppressed,
                "call refused: caller not allowed"
            );
        }
        Err(tonic::Status::permission_denied(format!(
            "{} does not take {method} from {caller}",
            self.callee
        )))
    }
}

/// Answers `PERMISSION_DENIED` to a call its [`CallerPolicy`] does not allow; with no policy
/// (plaintext), lets everything through.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallerPolicyLayer(pub Option<CallerPolicy>);

impl<S> Layer<S> for CallerPolicyLayer {
    type Service = CallerCheck<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallerCheck {
            inner,
            policy: self.0,
        }
    }
}

/// The service [`CallerPolicyLayer`] makes.
#[derive(Debug, Clone)]
pub struct CallerCheck<S> {
    inner: S,
    policy: Option<CallerPolicy>,
}

impl<S, B, ResBody> Service<http::Request<B>> for CallerCheck<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: http_body::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    ResBody::Error: Into<tonic::codegen::StdError>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if let Some(policy) = &self.policy
            && let Err(status) =
                policy.check(request.extensions().get::<Peer>(), request.uri().path())
        {
            return Box::pin(std::future::ready(Ok(status.into_http::<Body>())));
        }
        let response = self.inner.call(request);
        Box::pin(async move { Ok(response.await?.map(Body::new)) })
    }
}

/// A development CA in memory: certificates for tests, and for the monolith's own services
/// (nobody outside the process holds its key).
pub struct DevCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl DevCa {
    pub fn new() -> Result<Self, TlsError> {
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error)?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "learnhub dev CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().map_err(rcgen_error)?;
        Ok(Self {
            issuer: rcgen::CertifiedIssuer::self_signed(params, key).map_err(rcgen_error)?,
        })
    }

    /// The CA certificate (what TLS_CA_FILE holds).
    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate and key for `name` (`(cert_pem, key_pem)`), for both client and server use.
    pub fn issue(&self, name: &str) -> Result<(String, String), TlsError> {
        let mut params =
            rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(rcgen_error)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate().map_err(rcgen_error)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(rcgen_error)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// `service`'s identity under this CA.
    pub fn identity(&self, service: &'static str) -> Result<Arc<MutualTls>, TlsError> {
        let (cert, key) = self.issue(service)?;
        MutualTls::from_pem(
            service,
            cert.as_bytes(),
            key.as_bytes(),
            self.ca_pem().as_bytes(),
        )
    }
}

fn rcgen_error(err: rcgen::Error) -> TlsError {
    invalid("development CA")(err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_needs_all_three_files_or_plaintext_by_name() {
        assert!(matches!(
            TlsArgs::default().load("catalog-svc"),
            Err(TlsError::Missing { .. })
        ));
        assert!(matches!(TlsArgs::plaintext().load("catalog-svc"), Ok(None)));
        let partial = TlsArgs {
            tls_cert_file: Some("cert.pem".into()),
            ..TlsArgs::default()
        };
        assert!(matches!(
            partial.load("catalog-svc"),
            Err(TlsError::Incomplete {
                missing: "TLS_KEY_FILE"
            })
        ));
        let both = TlsArgs {
            insecure_plaintext: true,
            ..partial
        };
        assert!(matches!(both.load("catalog-svc"), Err(TlsError::Conflict)));
    }

    #[test]
    fn a_certificate_names_the_service_it_was_issued_to() {
        let ca = DevCa::new().unwrap_or_else(|err| panic!("{err}"));
        let (cert, _) = ca
            .issue("enrollment-svc")
            .unwrap_or_else(|err| panic!("{err}"));
        let der =
            CertificateDer::from_pem_slice(cert.as_bytes()).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(service_of(&der), Some("enrollment-svc"));
        let (other, _) = ca
            .issue("somebody-else")
            .unwrap_or_else(|err| panic!("{err}"));
        let der =
            CertificateDer::from_pem_slice(other.as_bytes()).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(service_of(&der), None);
    }

    #[test]
    fn an_identity_must_be_valid_for_its_own_service() {
        let ca = DevCa::new().unwrap_or_else(|err| panic!("{err}"));
        let (cert, key) = ca.issue("gateway").unwrap_or_else(|err| panic!("{err}"));
        let err = MutualTls::from_pem(
            "cache-svc",
            cert.as_bytes(),
            key.as_bytes(),
            ca.ca_pem().as_bytes(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("not valid for cache-svc"), "{err}");
    }

    #[test]
    fn the_policy_names_callee_method_and_caller() {
        fn only_gateway(_: &str) -> &'static [&'static str] {
            &["gateway"]
        }
        let policy = CallerPolicy {
            callee: "catalog-svc",
            allowed: only_gateway,
        };
        let peer = |service| Peer {
            service,
            remote_addr: None,
        };
        let path = "/learnhub.catalog.v1.CatalogService/CreateCourse";
        assert!(policy.check(Some(&peer(Some("gateway"))), path).is_ok());
        let denied = policy
            .check(Some(&peer(Some("enrollment-svc"))), path)
            .unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert_eq!(
            denied.message(),
            "catalog-svc does not take CreateCourse from enrollment-svc"
        );
        assert!(policy.check(Some(&peer(None)), path).is_err());
        // Health and reflection: any peer of the CA.
        assert!(
            policy
                .check(Some(&peer(None)), "/grpc.health.v1.Health/Check")
                .is_ok()
        );
        // Plaintext (no TLS peer at all): the server was told to trust everyone.
        assert!(policy.check(None, path).is_ok());
    }
}
