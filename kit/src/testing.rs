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
