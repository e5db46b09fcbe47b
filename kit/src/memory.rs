//! The in-memory transport of the monolith: its services serve and call each other over pipes
//! inside the process ([`tokio::io::duplex`]), so catalog-svc, enrollment-svc and cache-svc have
//! no TCP port at all and nothing outside the process can reach them.
//!
//! A [`MemoryNetwork`] is one process's switchboard: each service takes its place on it
//! ([`MemoryNetwork::endpoint`]), listens under its own name ([`MemoryEndpoint::listen`]) and
//! calls another by its address `memory://<name>` (the client takes the address from the same
//! flags a TCP address comes from). A connection knows who dialled it — only code of this
//! process can dial, with the endpoint it was given — so the server sees the caller as a
//! [`Peer`] just as mutual TLS would show it, and the per-RPC caller policy and the end user's
//! forwarding work unchanged, without certificates or encryption.
//!
//! Written here rather than taken from a crate: it is the glue between tonic's two documented
//! extension points (`serve_with_incoming` and `connect_with_connector_lazy`), a map and a pipe.
use std::{
    collections::HashMap,
    fmt, io,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
};

use futures::Stream;
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf},
    sync::mpsc,
};
use tonic::transport::{Uri, server::Connected};

use crate::tls::Peer;

/// The scheme of an in-memory address: `memory://catalog-svc`.
pub const SCHEME: &str = "memory";
/// Bytes buffered in each direction of a connection before the writer waits for the reader
/// (HTTP/2's own flow-control window is 64 KiB per stream).
const PIPE_BYTES: usize = 256 * 1024;
/// Connections made but not yet taken by their server.
const BACKLOG: usize = 1024;
static NEXT_LISTENER: AtomicU64 = AtomicU64::new(0);

/// Each open listener by name, with the id that tells it from a later one of the same name.
type Listeners = HashMap<String, (u64, mpsc::Sender<MemoryStream>)>;

/// `memory://<service>`.
fn address(service: &str) -> String {
    format!("{SCHEME}://{service}")
}

/// The services of one process that call each other in memory. Clones share the network.
#[derive(Clone, Default)]
pub struct MemoryNetwork(Arc<Mutex<Listeners>>);

impl fmt::Debug for MemoryNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let listening: Vec<String> = self.listeners().keys().cloned().collect();
        f.debug_struct("MemoryNetwork")
            .field("listening", &listening)
            .finish()
    }
}

impl MemoryNetwork {
    pub fn new() -> Self {
        Self::default()
    }

    /// `service`'s place on the network: where it listens and what it dials from.
    pub fn endpoint(&self, service: &'static str) -> MemoryEndpoint {
        MemoryEndpoint {
            network: self.clone(),
            service,
        }
    }

    fn listeners(&self) -> std::sync::MutexGuard<'_, Listeners> {
        // The map stays consistent whatever panicked while holding it (one insert or remove).
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One service on a [`MemoryNetwork`].
#[derive(Clone, Debug)]
pub struct MemoryEndpoint {
    network: MemoryNetwork,
    service: &'static str,
}

impl MemoryEndpoint {
    /// The service this endpoint is.
    pub fn service(&self) -> &'static str {
        self.service
    }

    /// This service's address: `memory://<service>`.
    pub fn address(&self) -> String {
        address(self.service)
    }

    /// Starts listening under the service's name; `AddrInUse` while another listener of the
    /// same name is open.
    pub fn listen(&self) -> io::Result<MemoryListener> {
        let mut listeners = self.network.listeners();
        if listeners
            .get(self.service)
            .is_some_and(|(_, open)| !open.is_closed())
        {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is listening already", self.address()),
            ));
        }
        let (sender, taken) = mpsc::channel(BACKLOG);
        let id = NEXT_LISTENER.fetch_add(1, Ordering::Relaxed);
        listeners.insert(self.service.to_owned(), (id, sender));
        Ok(MemoryListener {
            id,
            taken,
            network: self.network.clone(),
            service: self.service,
        })
    }

    /// What tonic's channel dials `callee` with, as this service.
    pub fn connector(&self, callee: &str) -> MemoryConnector {
        MemoryConnector {
            network: self.network.clone(),
            caller: self.service,
            callee: callee.to_owned(),
        }
    }
}

/// The server side: connections to one service, as tonic's `serve_with_incoming` takes them.
/// Dropping it stops the service being reachable.
pub struct MemoryListener {
    id: u64,
    taken: mpsc::Receiver<MemoryStream>,
    network: MemoryNetwork,
    service: &'static str,
}

impl MemoryListener {
    /// The address it listens on: `memory://<service>`.
    pub fn address(&self) -> String {
        address(self.service)
    }
}

impl fmt::Debug for MemoryListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MemoryListener")
            .field(&self.service)
            .finish()
    }
}

impl Stream for MemoryListener {
    type Item = io::Result<MemoryStream>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.taken.poll_recv(cx).map(|next| next.map(Ok))
    }
}

impl Drop for MemoryListener {
    fn drop(&mut self) {
        let mut listeners = self.network.listeners();
        // Only our own entry: a listener opened since under the same name stays.
        if listeners
            .get(self.service)
            .is_some_and(|(id, _)| *id == self.id)
        {
            listeners.remove(self.service);
        }
    }
}

/// One end of an in-memory connection. The server's end knows who dialled ([`Peer`], in every
/// request's extensions, as over mutual TLS).
pub struct MemoryStream {
    pipe: DuplexStream,
    peer: Peer,
}

impl Connected for MemoryStream {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer
    }
}

impl AsyncRead for MemoryStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().pipe).poll_read(cx, buf)
    }
}

impl AsyncWrite for MemoryStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().pipe).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().pipe).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().pipe).poll_shutdown(cx)
    }
}

/// Dials one service of the network, as one caller: a `tower::Service<Uri>` for tonic's
/// `Endpoint::connect_with_connector_lazy` (the URI is ignored: the callee is fixed).
#[derive(Clone, Debug)]
pub struct MemoryConnector {
    network: MemoryNetwork,
    caller: &'static str,
    callee: String,
}

impl tower::Service<Uri> for MemoryConnector {
    type Response = TokioIo<DuplexStream>;
    type Error = io::Error;
    type Future = futures::future::Ready<io::Result<Self::Response>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        futures::future::ready(self.dial())
    }
}

impl MemoryConnector {
    fn dial(&self) -> io::Result<TokioIo<DuplexStream>> {
        let refused = || {
            io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("nothing listens on {}", address(&self.callee)),
            )
        };
        let listener = self
            .network
            .listeners()
            .get(&self.callee)
            .map(|(_, listener)| listener.clone())
            .ok_or_else(refused)?;
        let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
        let stream = MemoryStream {
            pipe: theirs,
            peer: Peer {
                service: Some(self.caller),
                remote_addr: None,
            },
        };
        // A full backlog is a server not accepting: refused, as a TCP listener would.
        listener.try_send(stream).map_err(|_| refused())?;
        Ok(TokioIo::new(ours))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tower::ServiceExt;

    use super::*;

    fn uri() -> Uri {
        Uri::from_static("http://catalog-svc")
    }

    #[tokio::test]
    async fn the_server_learns_who_dialled_and_bytes_flow_both_ways() {
        use futures::StreamExt;
        let network = MemoryNetwork::new();
        let mut listener = network.endpoint("catalog-svc").listen().unwrap();
        let dialled = network
            .endpoint("gateway")
            .connector("catalog-svc")
            .oneshot(uri())
            .await
            .unwrap();
        let mut served = listener.next().await.unwrap().unwrap();
        assert_eq!(served.connect_info().service, Some("gateway"));
        assert_eq!(served.connect_info().remote_addr, None);

        let mut client = dialled.into_inner();
        client.write_all(b"ping").await.unwrap();
        let mut got = [0; 4];
        served.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        served.write_all(b"pong").await.unwrap();
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
    }

    #[tokio::test]
    async fn nothing_listening_is_refused_and_a_name_is_taken_once() {
        let network = MemoryNetwork::new();
        let connector = network.endpoint("gateway").connector("catalog-svc");
        let refused = connector.clone().oneshot(uri()).await.unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
        assert!(
            refused.to_string().contains("memory://catalog-svc"),
            "{refused}"
        );

        let first = network.endpoint("catalog-svc").listen().unwrap();
        let taken = network.endpoint("catalog-svc").listen().unwrap_err();
        assert_eq!(taken.kind(), io::ErrorKind::AddrInUse);
        assert!(connector.clone().oneshot(uri()).await.is_ok());

        // Closed: refused again, and the name is free.
        drop(first);
        let refused = connector.clone().oneshot(uri()).await.unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
        let _second = network.endpoint("catalog-svc").listen().unwrap();
        assert!(connector.oneshot(uri()).await.is_ok());
    }

    #[tokio::test]
    async fn two_networks_do_not_see_each_other() {
        let ours = MemoryNetwork::new();
        let theirs = MemoryNetwork::new();
        let _listening = theirs.endpoint("catalog-svc").listen().unwrap();
        let refused = ours
            .endpoint("gateway")
            .connector("catalog-svc")
            .oneshot(uri())
            .await
            .unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    }
}
