//! Request extractors whose rejections are our JSON 400s (axum's defaults are plain text) and
//! whose authentication runs before the body is read, so an anonymous caller learns nothing from
//! validation errors.
use std::sync::Arc;

use axum::{
    extract::{FromRequest, FromRequestParts, Request},
    http::request::Parts,
};
use learnhub_kit::validate::Invalid;
use serde::de::DeserializeOwned;

use crate::{
    auth::{Caller, Role, require},
    error::Error,
    rest::learner::{EnrollJson, ProgressBodyJson, SubmissionBodyJson},
    state::Gateway,
};

/// A JSON request body. Serde checks its shape; `check` applies the rules a shape cannot state
/// (slug syntax, lengths), with `learnhub_kit::validate`, so a bad value is refused here with the
/// `field: reason` message the service behind would give, and the service is not called.
pub trait RequestBody: DeserializeOwned {
    /// The body's rules beyond its shape; none unless a body says so.
    fn check(&self) -> Result<(), Invalid> {
        Ok(())
    }
}

// Bodies whose shape is all the gateway checks (the services check the ids and sizes in them).
impl RequestBody for EnrollJson {}
impl RequestBody for ProgressBodyJson {}
impl RequestBody for SubmissionBodyJson {}

/// A JSON body; a wrong content type or malformed/mistyped JSON is a 400 naming the problem, and
/// so is a value its [`RequestBody::check`] refuses.
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: RequestBody,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<serde_json::Value>::from_request(req, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
                    Error::TooLarge(format!(
                        "request body: larger than {} bytes",
                        super::MAX_BODY_BYTES
                    ))
                } else {
                    Error::invalid(format!("request body: {}", bounded(rejection.body_text())))
                }
            })?;
        // Serde would read `[7]` as a struct field by field: only an object names its fields.
        if !value.is_object() {
            return Err(Error::invalid("request body: must be a JSON object"));
        }
        // The error names the field's path, e.g. `course_type: unknown variant`.
        let body: T = serde_path_to_error::deserialize(value)
            .map_err(|err| Error::invalid(format!("request body: {}", bounded(err.to_string()))))?;
        body.check()
            .map_err(|invalid| Error::invalid(invalid.to_string()))?;
        Ok(Self(body))
    }
}

/// The most of a JSON error shown. serde quotes unknown field names and variants, so a body of a
/// megabyte could otherwise be answered with a message of a megabyte.
const MAX_DETAIL_CHARS: usize = 300;

/// `detail`, cut to [`MAX_DETAIL_CHARS`] characters.
fn bounded(detail: String) -> String {
    match detail.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((at, _)) => format!("{}…", &detail[..at]),
        None => detail,
    }
}

/// A query string; unknown or malformed parameters are a 400 naming them.
pub struct QueryParams<T>(pub T);

impl<T, S> FromRequestParts<S> for QueryParams<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(Error::invalid(format!(
                "query string: {}",
                rejection.body_text()
            ))),
        }
    }
}

/// One path segment, as text (ids and slugs are parsed by the handler so errors name them).
pub struct PathSegment(pub String);

impl<S> FromRequestParts<S> for PathSegment
where
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(Error::invalid(format!("path: {}", rejection.body_text()))),
        }
    }
}

impl PathSegment {
    /// The segment as a positive id, or a 400 naming `id`.
    pub fn id(&self) -> Result<i64, Error> {
        match self.0.parse::<i64>() {
            Ok(id) if id > 0 => Ok(id),
            _ => Err(Error::invalid(format!(
                "id: must be a positive integer, got {:?}",
                self.0
            ))),
        }
    }
}

/// The caller, if an `Authorization` header is sent; a bad header is a 401 even here, and several
/// are a 400: a proxy and the gateway could otherwise each read a different one.
pub struct MaybeCaller(pub Option<Caller>);

impl FromRequestParts<Arc<Gateway>> for MaybeCaller {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        gateway: &Arc<Gateway>,
    ) -> Result<Self, Self::Rejection> {
        let mut headers = parts.headers.get_all(http::header::AUTHORIZATION).iter();
        let header = headers.next().map(|value| value.as_bytes());
        if headers.next().is_some() {
            return Err(Error::invalid(
                "authorization: send one Authorization header, not several",
            ));
        }
        let caller = gateway.authenticate(header)?;
        if let Some(caller) = &caller {
            crate::access::note_caller(caller);
        }
        Ok(Self(caller))
    }
}

/// An admin caller: 401 without a valid token, 403 with a learner's.
pub struct AdminCaller(pub Caller);

impl FromRequestParts<Arc<Gateway>> for AdminCaller {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        gateway: &Arc<Gateway>,
    ) -> Result<Self, Self::Rejection> {
        let MaybeCaller(caller) = MaybeCaller::from_request_parts(parts, gateway).await?;
        Ok(Self(require(caller.as_ref(), Role::Admin)?.clone()))
    }
}

/// A learner (or admin) caller: 401 without a valid token. Checked before the body is read.
pub struct LearnerCaller(pub Caller);

impl FromRequestParts<Arc<Gateway>> for LearnerCaller {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        gateway: &Arc<Gateway>,
    ) -> Result<Self, Self::Rejection> {
        let MaybeCaller(caller) = MaybeCaller::from_request_parts(parts, gateway).await?;
        Ok(Self(require(caller.as_ref(), Role::Learner)?.clone()))
    }
}
