//! The end user a call is made for, carried from the gateway to the services it calls.
//!
//! The gateway runs each authenticated request inside [`scope`] (the token's subject); every
//! call made through a `client::connect` channel within it carries the subject in
//! [`HEADER`]. A server takes the header only from the gateway's certificate (never over
//! plaintext, where anyone could send it: the gateway's own public port included), records it
//! on the request's server span as
//! `enduser.id`, so the service's logs and traces say for whom it worked, and leaves it in the
//! request's extensions as [`EndUser`] for a handler that checks ownership: the value is the
//! subject, followed by `;admin` when the token's role is admin (a learner may act only on its
//! own data; an admin on anyone's).
use std::{future::Future, sync::Arc};

use http::HeaderValue;

use crate::tls::Peer;

/// The metadata key of the end user's id.
pub const HEADER: &str = "x-learnhub-end-user";

/// The service whose word about the end user is taken.
const FORWARDED_BY: &str = "gateway";

/// What follows the id in [`HEADER`] for an admin.
const ADMIN_SUFFIX: &str = ";admin";

tokio::task_local! {
    /// The user, and its header value made once per request rather than once per call.
    static END_USER: (EndUser, Option<HeaderValue>);
}

/// The end user a server's request was made for, as the gateway forwarded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndUser {
    /// The token's subject.
    pub id: Arc<str>,
    /// The token's role is admin.
    pub admin: bool,
}

impl EndUser {
    pub fn learner(id: impl Into<Arc<str>>) -> Self {
        Self {
            id: id.into(),
            admin: false,
        }
    }

    pub fn admin(id: impl Into<Arc<str>>) -> Self {
        Self {
            id: id.into(),
            admin: true,
        }
    }

    /// Whether this user may act on the learner data of `user_id`: its own, or anyone's for an
    /// admin.
    pub fn may_act_for(&self, user_id: i64) -> bool {
        self.admin || self.id.parse::<i64>().is_ok_and(|id| id == user_id)
    }

    fn header_value(&self) -> Option<HeaderValue> {
        let value = if self.admin {
            format!("{}{ADMIN_SUFFIX}", self.id)
        } else {
            self.id.to_string()
        };
        HeaderValue::from_str(&value).ok()
    }
}

/// Runs `work` on behalf of `user`: calls to other services made within it carry it.
pub async fn scope<F: Future>(user: EndUser, work: F) -> F::Output {
    let header = user.header_value();
    END_USER.scope((user, header), work).await
}

/// Adds the current end user (if any) to an outgoing call's headers, replacing whatever the
/// request held.
pub(crate) fn inject(headers: &mut http::HeaderMap) {
    headers.remove(HEADER);
    if let Ok(Some(value)) = END_USER.try_with(|(_, header)| header.clone()) {
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
    if value.is_empty() || value.len() > 64 {
        return None;
    }
    Some(match value.strip_suffix(ADMIN_SUFFIX) {
        Some(id) => EndUser::admin(id),
        None => EndUser::learner(value),
    })
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
        scope(EndUser::learner("42"), async {
            inject(&mut headers);
        })
        .await;
        assert_eq!(headers.get(HEADER).unwrap(), "42");
        scope(EndUser::admin("1"), async {
            inject(&mut headers);
        })
        .await;
        assert_eq!(headers.get(HEADER).unwrap(), "1;admin");
    }

    #[test]
    fn a_learner_acts_for_itself_and_an_admin_for_anyone() {
        assert!(EndUser::learner("42").may_act_for(42));
        assert!(!EndUser::learner("42").may_act_for(7));
        assert!(!EndUser::learner("not a number").may_act_for(0));
        assert!(EndUser::admin("1").may_act_for(7));
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
            Some(EndUser::learner("7"))
        );
        let mut admin = http::HeaderMap::new();
        admin.insert(HEADER, HeaderValue::from_static("1;admin"));
        assert_eq!(
            of_request(&admin, Some(&peer(Some("gateway")))),
            Some(EndUser::admin("1"))
        );
        assert_eq!(of_request(&headers, Some(&peer(Some("catalog-svc")))), None);
        assert_eq!(of_request(&headers, Some(&peer(None))), None);
        // Over plaintext anyone could send it, a public caller of the gateway included.
        assert_eq!(of_request(&headers, None), None);
        let gateway = peer(Some("gateway"));
        assert_eq!(of_request(&http::HeaderMap::new(), Some(&gateway)), None);
    }
}
