//! What every gRPC and REST handler shares: the upstream clients and the token verifier.
use crate::{
    auth::{AuthError, Caller, TokenVerifier},
    upstream::Upstreams,
};

/// The gateway's operations live in `impl Gateway` blocks (`catalog.rs`, `learner.rs`), so the
/// gRPC and REST front ends apply the same validation and the same authorisation.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub upstreams: Upstreams,
    pub tokens: TokenVerifier,
}

impl Gateway {
    pub fn new(upstreams: Upstreams, tokens: TokenVerifier) -> Self {
        Self { upstreams, tokens }
    }

    /// The caller named by an `authorization` header (REST) or metadata entry (gRPC).
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Option<Caller>, AuthError> {
        self.tokens.authenticate(authorization)
    }
}
