//! What every gRPC and REST handler shares: the upstream clients and the token verifier.
use std::time::Duration;

use crate::{
    auth::{AuthError, Caller, TokenVerifier},
    stale::StaleStore,
    upstream::Upstreams,
};

/// The gateway's operations live in `impl Gateway` blocks (`catalog.rs`, `learner.rs`), so the
/// gRPC and REST front ends apply the same validation and the same authorisation.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub upstreams: Upstreams,
    pub tokens: TokenVerifier,
    /// Last good public answers, for when catalog-svc does not answer.
    pub(crate) stale: StaleStore,
}

impl Gateway {
    /// Without stale-if-error (see [`Gateway::with_stale_if_error`]).
    pub fn new(upstreams: Upstreams, tokens: TokenVerifier) -> Self {
        Self {
            upstreams,
            tokens,
            stale: StaleStore::new(Duration::ZERO),
        }
    }

    /// Public reads answered from their last good copy, at most `max_age` old, when catalog-svc
    /// does not answer (zero: never).
    pub fn with_stale_if_error(self, max_age: Duration) -> Self {
        Self {
            stale: StaleStore::new(max_age),
            ..self
        }
    }

    /// The caller named by an `authorization` header (REST) or metadata entry (gRPC).
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Option<Caller>, AuthError> {
        self.tokens.authenticate(authorization)
    }
}
