//! Helpers for the services' tests.

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
