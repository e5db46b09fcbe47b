//! The end user a call is made for, carried from the gateway to the services it calls.
//!
//! The gateway runs each authenticated request inside [`scope`] (the token's subject); every
//! call made through a `client::connect` channel within it carries the subject in
//! [`HEADER`]. A server takes the header only from the gateway's certificate (never over
//! plaintext, where anyone could send it: the gateway's own public port included), records it
//! on the request's server span as
//! `enduser.id`, so the service's logs and traces say for whom it worked, and leaves it in the
//! request's extensions as [`EndUser`] for a handler that checks ownership.
use std::{future::Future, sync::Arc};

use http::HeaderValue;

use crate::tls::Peer;

/// The metadata key of the end user's id.
pub const HEADER: &str = "x-learnhub-end-user";

/// The service whose word about the end user is taken.
const FORWARDED_BY: &str = "gateway";

tokio::task_local! {
    static END_USER: Arc<str>;
}

/// The end user a server's request was made for, as the gateway forwarded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndUser(pub Arc<str>);

/// Runs `work` on behalf of `user`: calls to other services made within it carry the id.
pub async fn scope<F: Future>(user: impl Into<Arc<str>>, work: F) -> F::Output {
    END_USER.scope(user.into(), work).await
}

/// The end user of the work in progress, if it runs inside [`scope`].
pub fn current() -> Option<Arc<str>> {
    END_USER.try_with(Arc::clone).ok()
}

/// Adds the current end user (if any) to an outgoing call's headers, replacing whatever the
/// request held.
pub(crate) fn inject(headers: &mut http::HeaderMap) {
    headers.remove(HEADER);
    if let Some(user) = current()
        && let Ok(value) = HeaderValue::from_str(&user)
    {
        headers.insert(HEADER, value);
    }
}

/// The end user an incoming call names, when the caller may name one: the gateway over mutual
/// TLS (`peer` is `None` on a plaintext server).
pub(crate) fn of_request(headers: &http::HeaderMap, peer: Option<&Peer>) -> Option<EndUser> {
    if peer?.service != Some(FORWARDED_BY) {
        return None;
    }
    let value = headers.get(HEADER)?.to_str().ok()?;
    // Ids are short: a longer value is not one the gateway sent.
    (!value.is_empty() && value.len() <= 64).then(|| EndUser(value.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_user_travels_only_inside_its_scope() {
        let mut headers = http::HeaderMap::new();
        headers.insert(HEADER, HeaderValue::from_static("forged"));
        inject(&mut headers);
        assert!(
            headers.get(HEADER).is_none(),
            "a header from outside is dropped"
        );
        scope("42", async {
            inject(&mut headers);
        })
        .await;
        assert_eq!(headers.get(HEADER).unwrap(), "42");
    }

    #[test]
    fn only_the_gateway_names_the_end_user() {
        let mut headers = http::HeaderMap::new();
        headers.insert(HEADER, HeaderValue::from_static("7"));
        let peer = |service| Peer {
            service,
            remote_addr: None,
        };
        assert_eq!(
            of_request(&headers, Some(&peer(Some("gateway")))),
            Some(EndUser("7".into()))
        );
        assert_eq!(of_request(&headers, Some(&peer(Some("catalog-svc")))), None);
        assert_eq!(of_request(&headers, Some(&peer(None))), None);
        // Over plaintext anyone could send it, a public caller of the gateway included.
        assert_eq!(of_request(&headers, None), None);
        let gateway = peer(Some("gateway"));
        assert_eq!(of_request(&http::HeaderMap::new(), Some(&gateway)), None);
    }
}
