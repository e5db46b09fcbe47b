//! The request body of every gateway RPC (all unary), checked before tonic reads it: exactly one
//! uncompressed message that decodes as the method's request type. tonic would otherwise read the
//! first message and drop any after it, and answer an undecodable one INTERNAL with the decoder's
//! own words; here both are INVALID_ARGUMENT with a message of ours.
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use learnhub_proto::{
    cache::v1 as cache, catalog::v1 as catalog, common::v1 as common, enrollment::v1 as enrollment,
    gateway::v1 as gateway,
};
use prost::Message;
use tonic::{Status, server::NamedService};
use tower::Service;

/// The largest request message accepted: tonic's default decoding limit.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Flag byte and big-endian length before each message.
const FRAME_HEADER: usize = 5;

/// Wraps the gateway's gRPC service (inside the gRPC-Web translation, so both protocols pass).
#[derive(Debug, Clone)]
pub struct UnaryRequests<S>(pub S);

impl<S: NamedService> NamedService for UnaryRequests<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for UnaryRequests<S>
where
    S: Service<http::Request<axum::body::Body>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The service that was polled ready serves this call; its clone waits for the next.
        let clone = self.0.clone();
        let mut inner = std::mem::replace(&mut self.0, clone);
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let method = parts.uri.path().rsplit('/').next().unwrap_or_default();
            let body = axum::body::Body::new(body);
            let bytes = match axum::body::to_bytes(body, MAX_MESSAGE_BYTES + FRAME_HEADER).await {
                Ok(bytes) => bytes,
                Err(_) => {
                    return Ok(Status::resource_exhausted(format!(
                        "request: unreadable or larger than {MAX_MESSAGE_BYTES} bytes"
                    ))
                    .into_http());
                }
            };
            if let Err(refused) = check(method, &bytes) {
                return Ok(refused.into_http());
            }
            let request = http::Request::from_parts(parts, axum::body::Body::from(bytes));
            inner.call(request).await
        })
    }
}

/// The body of a call to `method`: one message frame, uncompressed, decoding as its request.
fn check(method: &str, body: &[u8]) -> Result<(), Status> {
    let message = single_message(body).map_err(Status::invalid_argument)?;
    decode(method, message).map_err(|type_name| {
        Status::invalid_argument(format!("request: not a valid {type_name} message"))
    })
}

/// The one message a unary call's body frames.
fn single_message(body: &[u8]) -> Result<&[u8], String> {
    let Some((header, rest)) = body.split_first_chunk::<FRAME_HEADER>() else {
        return Err("request: no message (a unary call sends exactly one)".into());
    };
    let [flag, len @ ..] = *header;
    if flag != 0 {
        return Err("request: compressed messages are not accepted".into());
    }
    let len = u32::from_be_bytes(len) as usize;
    if rest.len() < len {
        return Err("request: the message is cut short".into());
    }
    let (message, after) = rest.split_at(len);
    if !after.is_empty() {
        return Err("request: a unary call sends exactly one message, got more".into());
    }
    Ok(message)
}

/// Decodes `message` as `method`'s request type; on failure, the type's name. A method the
/// service does not have passes: tonic answers it UNIMPLEMENTED.
fn decode(method: &str, message: &[u8]) -> Result<(), &'static str> {
    fn as_type<T: Message + Default>(
        message: &[u8],
        name: &'static str,
    ) -> Result<(), &'static str> {
        T::decode(message).map(drop).map_err(|_| name)
    }
    match method {
        "GetCatalogPage" => {
            as_type::<gateway::GetCatalogPageRequest>(message, "GetCatalogPageRequest")
        }
        "GetCourse" => as_type::<catalog::GetCourseRequest>(message, "GetCourseRequest"),
        "ListCategories" => {
            as_type::<catalog::ListCategoriesRequest>(message, "ListCategoriesRequest")
        }
        "GetMe" => as_type::<gateway::GetMeRequest>(message, "GetMeRequest"),
        "ListMyEnrollments" => {
            as_type::<gateway::ListMyEnrollmentsRequest>(message, "ListMyEnrollmentsRequest")
        }
        "Enroll" => as_type::<gateway::EnrollRequest>(message, "EnrollRequest"),
        "RecordProgress" => as_type::<enrollment::RecordLessonProgressRequest>(
            message,
            "RecordLessonProgressRequest",
        ),
        "GetProgress" => as_type::<enrollment::GetProgressRequest>(message, "GetProgressRequest"),
        "SubmitExercise" => {
            as_type::<gateway::SubmitExerciseRequest>(message, "SubmitExerciseRequest")
        }
        "ListMySubmissions" => {
            as_type::<gateway::ListMySubmissionsRequest>(message, "ListMySubmissionsRequest")
        }
        "CreateCourse" => as_type::<catalog::CreateCourseRequest>(message, "CreateCourseRequest"),
        "UpdateCourse" => as_type::<catalog::UpdateCourseRequest>(message, "UpdateCourseRequest"),
        "PublishCourse" => {
            as_type::<catalog::PublishCourseRequest>(message, "PublishCourseRequest")
        }
        "ArchiveCourse" => {
            as_type::<catalog::ArchiveCourseRequest>(message, "ArchiveCourseRequest")
        }
        "GetUser" => as_type::<gateway::GetUserRequest>(message, "GetUserRequest"),
        "GetEnrollmentStats" => {
            as_type::<enrollment::EnrollmentStatsRequest>(message, "EnrollmentStatsRequest")
        }
        "GetCacheStats" => as_type::<cache::GetStatsRequest>(message, "GetStatsRequest"),
        "InvalidateCache" => {
            as_type::<cache::InvalidatePatternRequest>(message, "InvalidatePatternRequest")
        }
        "GetDbStats" => as_type::<common::GetDbStatsRequest>(message, "GetDbStatsRequest"),
        _ => Ok(()),
    }
}

/// The methods [`decode`] knows, for the test that holds it to the service's definition.
#[cfg(test)]
fn service_methods() -> Vec<(String, String)> {
    let set = prost_types::FileDescriptorSet::decode(learnhub_proto::FILE_DESCRIPTOR_SET)
        .unwrap_or_default();
    use learnhub_proto::gateway::v1::gateway_service_server::SERVICE_NAME;
    let (package, service) = SERVICE_NAME.rsplit_once('.').unwrap_or_default();
    set.file
        .iter()
        .filter(|file| file.package() == package)
        .flat_map(|file| &file.service)
        .filter(|found| found.name() == service)
        .flat_map(|found| &found.method)
        .map(|method| {
            let input = method.input_type().rsplit('.').next().unwrap_or_default();
            (method.name().to_owned(), input.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(message: &[u8]) -> Vec<u8> {
        learnhub_kit::testing::grpc_web::frame(message)
    }

    #[test]
    fn every_method_of_the_service_is_decoded_as_its_own_request_type() {
        let methods = service_methods();
        assert_eq!(methods.len(), 19, "{methods:?}");
        // A field-1 varint: valid for messages whose field 1 is an integer or absent, invalid
        // for those whose field 1 is a string or a message. Bytes no message accepts:
        let garbage = [0xff, 0xff, 0xff];
        for (method, input) in methods {
            assert_eq!(decode(&method, &[]), Ok(()), "{method}: the empty message");
            assert_eq!(decode(&method, &garbage), Err(input.as_str()), "{method}");
        }
    }

    #[test]
    fn one_message_exactly() {
        let one = frame(b"");
        assert_eq!(single_message(&one), Ok(&b""[..]));
        let mut two = frame(&[8, 1]);
        two.extend(frame(&[8, 2]));
        assert!(single_message(&two).unwrap_err().contains("exactly one"));
        assert!(single_message(&[]).unwrap_err().contains("no message"));
        assert!(
            single_message(&[0, 0, 0, 0, 9, 1])
                .unwrap_err()
                .contains("cut short")
        );
        assert!(
            single_message(&[1, 0, 0, 0, 0])
                .unwrap_err()
                .contains("compressed")
        );
    }

    #[test]
    fn refusals_are_invalid_argument_without_decoder_words() {
        let status = check("GetCourse", &frame(&[0x12, 0x05, b'a'])).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "request: not a valid GetCourseRequest message"
        );
        assert!(check("GetCourse", &frame(&[0x08, 0x07])).is_ok());
    }
}
