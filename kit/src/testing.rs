//! Helpers for the services' tests.
use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};

use tokio::task::JoinHandle;

/// Polls `done` every few milliseconds until it holds; panics naming `what` if it does not within
/// `limit` (a test fails rather than hangs; the limit is never what the test measures).
pub async fn eventually(
    what: &str,
    limit: std::time::Duration,
    mut done: impl AsyncFnMut() -> bool,
) {
    let start = std::time::Instant::now();
    while !done().await {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Asserts a gRPC error's code and that its message names `field`.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: tonic::Code,
    field: &str,
) {
    match result {
        Ok(value) => panic!("expected {code:?} naming {field:?}, got {value:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "{status:?}");
            assert!(
                status.message().contains(field),
                "message {:?} should name {field:?}",
                status.message()
            );
        }
    }
}

/// gRPC-Web framing written out (what a browser's grpc-web client sends and reads), for tests
/// that speak it over plain HTTP/1.
pub mod grpc_web {
    /// The `content-type` of a binary gRPC-Web call.
    pub const CONTENT_TYPE: &str = "application/grpc-web+proto";

    /// Flag byte of a message frame.
    const DATA: u8 = 0x00;
    /// Flag byte of the trailers frame that ends a response.
    const TRAILERS: u8 = 0x80;

    /// One uncompressed message frame: flag `0x00`, big-endian length, the encoded message.
    pub fn frame(message: &[u8]) -> Vec<u8> {
        let len = u32::try_from(message.len()).unwrap_or_else(|_| panic!("message over 4 GiB"));
        let mut frame = Vec::with_capacity(5 + message.len());
        frame.push(DATA);
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(message);
        frame
    }

    /// A unary call's response body, split into its frames.
    #[derive(Debug)]
    pub struct UnaryResponse<'a> {
        /// The encoded response message (decode it with `prost::Message::decode`).
        pub message: &'a [u8],
        /// The trailers frame's text, e.g. `grpc-status:0\r\n`.
        pub trailers: String,
    }

    /// Splits `body` into one data frame (`0x00`) and the trailers frame (`0x80`) that must
    /// follow it, asserting that shape.
    #[track_caller]
    pub fn split_unary(body: &[u8]) -> UnaryResponse<'_> {
        let (flag, message, rest) = next_frame(body);
        assert_eq!(flag, DATA, "a data frame first");
        let (flag, trailers, rest) = next_frame(rest);
        assert_eq!(flag, TRAILERS, "then the trailers frame");
        assert!(rest.is_empty(), "nothing after the trailers frame");
        UnaryResponse {
            message,
            trailers: String::from_utf8_lossy(trailers).into_owned(),
        }
    }

    /// The first frame of `bytes`: its flag, its payload and what follows it.
    #[track_caller]
    fn next_frame(bytes: &[u8]) -> (u8, &[u8], &[u8]) {
        assert!(bytes.len() >= 5, "a frame header (5 bytes) in {bytes:?}");
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        let payload = &bytes[5..];
        assert!(payload.len() >= len, "a frame of {len} bytes in {bytes:?}");
        (bytes[0], &payload[..len], &payload[len..])
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_framed_message_and_its_trailers_split_back() {
            let mut body = frame(b"hello");
            assert_eq!(body[..5], [0, 0, 0, 0, 5]);
            let trailers = b"grpc-status:0\r\n";
            body.push(0x80);
            body.extend_from_slice(&(trailers.len() as u32).to_be_bytes());
            body.extend_from_slice(trailers);
            let response = split_unary(&body);
            assert_eq!(response.message, b"hello");
            assert!(response.trailers.starts_with("grpc-status:0"));
        }
    }
}

/// A TCP path to a server that the test can cut and mend: a network partition between a
/// service and cache-svc, with both processes still up. Cutting closes the connections through
/// it, and new ones as soon as they are accepted.
pub struct Partition {
    pub addr: std::net::SocketAddr,
    open: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    task: JoinHandle<()>,
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.task.abort();
        let mut connections = self
            .connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for connection in connections.drain(..) {
            connection.abort();
        }
    }
}

impl Partition {
    /// A path to `target`, open. Panics if no loopback port can be bound (test set-up).
    pub async fn to(target: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the partition's port");
        let addr = listener.local_addr().expect("the partition's address");
        let open = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (accepting, tracked) = (Arc::clone(&open), Arc::clone(&connections));
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                // Both checks under the lock `cut` takes: no connection slips past a cut.
                let live = tracked.lock();
                let mut live = live.unwrap_or_else(std::sync::PoisonError::into_inner);
                if !accepting.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                live.push(tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Self {
            addr,
            open,
            connections,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes every connection through the path (they are gone when this returns) and refuses
    /// new ones until [`Self::mend`].
    pub async fn cut(&self) {
        let connections: Vec<_> = {
            let mut tracked = self
                .connections
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.open.store(false, Ordering::SeqCst);
            tracked.drain(..).collect()
        };
        for connection in connections {
            connection.abort();
            let _ = connection.await;
        }
    }

    pub fn mend(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}
