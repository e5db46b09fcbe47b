//! Caller authentication: HS256 JWTs (`sub` = user id, `role` = learner|admin, `exp`).
use std::{fmt, time::Duration};

use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind,
    get_current_timestamp,
};
use serde::{Deserialize, Serialize};

/// What a token allows. An admin may do everything a learner may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Learner,
    Admin,
}

impl Role {
    fn allows(self, needed: Role) -> bool {
        matches!(
            (self, needed),
            (Role::Admin, _) | (Role::Learner, Role::Learner)
        )
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Learner => "learner",
            Role::Admin => "admin",
        })
    }
}

/// The claims learnhub signs and reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub subject: String,
    pub role: Role,
}

impl Caller {
    /// The user id the token names; `None` when `sub` is not numeric (e.g. an operator token).
    pub fn user_id(&self) -> Option<i64> {
        self.subject.parse().ok().filter(|id: &i64| *id > 0)
    }

    /// The user id, required by calls that act on the caller's own data.
    pub fn require_user_id(&self) -> Result<i64, AuthError> {
        self.user_id().ok_or(AuthError::NotAUser)
    }
}

/// Why a call was refused. Everything but `Forbidden` is "who are you?" (401 / UNAUTHENTICATED).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send `authorization: Bearer <JWT>`")]
    MissingToken,
    #[error("the authorization header must be `Bearer <JWT>`")]
    MalformedHeader,
    #[error("the token has expired")]
    Expired,
    #[error("the token signature is invalid")]
    BadSignature,
    #[error("the token must be signed with HS256")]
    WrongAlgorithm,
    #[error("the token lacks the `{0}` claim")]
    MissingClaim(String),
    #[error("the token is malformed")]
    Malformed,
    #[error("the token subject is not a user id")]
    NotAUser,
    #[error("this needs the {needed} role")]
    Forbidden { needed: Role },
    #[error("this belongs to another user")]
    NotYours,
    #[error("cannot sign a token: {0}")]
    Sign(jsonwebtoken::errors::Error),
    #[error("the token secret must not be empty")]
    EmptySecret,
}

impl AuthError {
    /// True for 403 / PERMISSION_DENIED (authenticated, not allowed), false for 401.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, AuthError::Forbidden { .. } | AuthError::NotYours)
    }
}

/// Signs a token for `subject` with `role`, valid for `ttl` (the monolith's `token` command and tests).
pub fn issue_token(
    secret: &str,
    subject: &str,
    role: Role,
    ttl: Duration,
) -> Result<String, AuthError> {
    let now = get_current_timestamp();
    let claims = Claims {
        sub: subject.to_owned(),
        role,
        exp: now.saturating_add(ttl.as_secs()),
        iat: Some(now),
    };
    let key = EncodingKey::from_secret(secret.as_bytes()).map_err(|_| AuthError::EmptySecret)?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).map_err(AuthError::Sign)
}

/// Checks tokens against the shared secret. Cheap to clone; the secret never leaves it.
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier").finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// A verifier for `secret`; an empty secret would accept tokens anyone can sign.
    pub fn new(secret: &str) -> Result<Self, AuthError> {
        let key =
            DecodingKey::from_secret(secret.as_bytes()).map_err(|_| AuthError::EmptySecret)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        // Small clock skew between the issuer and this gateway; not a grace period.
        validation.leeway = 5;
        Ok(Self { key, validation })
    }

    /// Verifies a bare token.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|err| {
                match err.kind() {
                    ErrorKind::ExpiredSignature => AuthError::Expired,
                    ErrorKind::InvalidSignature => AuthError::BadSignature,
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        AuthError::WrongAlgorithm
                    }
                    ErrorKind::MissingRequiredClaim(claim) => {
                        AuthError::MissingClaim(claim.clone())
                    }
                    // A claim our `Claims` needs but the token lacks fails deserialisation.
                    ErrorKind::Json(json) => missing_field(&json.to_string())
                        .map_or(AuthError::Malformed, |claim| {
                            AuthError::MissingClaim(claim.into())
                        }),
                    _ => AuthError::Malformed,
                }
            })?;
        Ok(Caller {
            subject: data.claims.sub,
            role: data.claims.role,
        })
    }

    /// The caller named by an `authorization` header value; `Ok(None)` when there is none.
    /// A header that is present but bad is an error even on public routes, so a client with an
    /// expired token learns it instead of silently seeing the anonymous view.
    pub fn authenticate(&self, header: Option<&[u8]>) -> Result<Option<Caller>, AuthError> {
        let Some(header) = header else {
            return Ok(None);
        };
        let header = std::str::from_utf8(header).map_err(|_| AuthError::MalformedHeader)?;
        let (scheme, token) = header
            .trim()
            .split_once(' ')
            .ok_or(AuthError::MalformedHeader)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(AuthError::MalformedHeader);
        }
        self.verify(token.trim()).map(Some)
    }
}

/// `exp` from serde's "missing field `exp` at line 1 column 9".
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// The caller if it holds `needed` (or a role above it).
pub fn require(caller: Option<&Caller>, needed: Role) -> Result<&Caller, AuthError> {
    let caller = caller.ok_or(AuthError::MissingToken)?;
    if caller.role.allows(needed) {
        Ok(caller)
    } else {
        Err(AuthError::Forbidden { needed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "test-secret-with-enough-bytes-0123456789";

    fn sign<T: Serialize>(claims: &T, alg: Algorithm, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(alg),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn in_an_hour() -> u64 {
        get_current_timestamp() + 3600
    }

    #[test]
    fn valid_learner_and_admin_tokens() {
        let verifier = TokenVerifier::new(SECRET).unwrap();
        for role in [Role::Learner, Role::Admin] {
            let token = issue_token(SECRET, "42", role, Duration::from_secs(60)).unwrap();
            let caller = verifier.verify(&token).unwrap();
            assert_eq!(caller.role, role);
            assert_eq!(caller.subject, "42");
            assert_eq!(caller.user_id(), Some(42));
        }
    }

    #[test]
    fn bearer_header_parsing() {
        let verifier = TokenVerifier::new(SECRET).unwrap();
        let token = issue_token(SECRET, "7", Role::Learner, Duration::from_secs(60)).unwrap();
        assert_eq!(verifier.authenticate(None).unwrap(), None);
        let header = format!("Bearer {token}");
        assert!(
            verifier
                .authenticate(Some(header.as_bytes()))
                .unwrap()
                .is_some()
        );
        let lower = format!("bearer {token}");
        assert!(
            verifier
                .authenticate(Some(lower.as_bytes()))
                .unwrap()
                .is_some()
        );
        for bad in [token.as_str(), "Basic abc", "Bearer ", "Bearer"] {
            assert!(matches!(
                verifier.authenticate(Some(bad.as_bytes())),
                Err(AuthError::MalformedHeader)
            ));
        }
        assert!(matches!(
            verifier.authenticate(Some(&[0xff, 0xfe])),
            Err(AuthError::MalformedHeader)
        ));
    }

    #[test]
    fn expired_token_is_refused() {
        let claims = Claims {
            sub: "1".into(),
            role: Role::Admin,
            exp: get_current_timestamp() - 3600,
            iat: None,
        };
        let token = sign(&claims, Algorithm::HS256, SECRET);
        assert!(matches!(
            TokenVerifier::new(SECRET).unwrap().verify(&token),
            Err(AuthError::Expired)
        ));
    }

    #[test]
    fn bad_signature_is_refused() {
        let token =
            issue_token("another-secret", "1", Role::Admin, Duration::from_secs(60)).unwrap();
        assert!(matches!(
            TokenVerifier::new(SECRET).unwrap().verify(&token),
            Err(AuthError::BadSignature)
        ));
    }

    #[test]
    fn wrong_algorithm_is_refused() {
        let claims = Claims {
            sub: "1".into(),
            role: Role::Admin,
            exp: in_an_hour(),
            iat: None,
        };
        // Same secret, but HS512: only HS256 is accepted.
        let token = sign(&claims, Algorithm::HS512, SECRET);
        assert!(matches!(
            TokenVerifier::new(SECRET).unwrap().verify(&token),
            Err(AuthError::WrongAlgorithm)
        ));
        // `alg: none` with no signature.
        let unsigned = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&format!(
                r#"{{"sub":"1","role":"admin","exp":{}}}"#,
                in_an_hour()
            ))
        );
        let err = TokenVerifier::new(SECRET)
            .unwrap()
            .verify(&unsigned)
            .unwrap_err();
        assert!(!err.is_forbidden(), "{err}");
    }

    fn b64(text: &str) -> String {
        // Minimal URL-safe base64 without padding, to forge tokens by hand.
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = text.as_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    #[test]
    fn missing_or_unknown_role_is_refused() {
        #[derive(Serialize)]
        struct NoRole {
            sub: String,
            exp: u64,
        }
        #[derive(Serialize)]
        struct OddRole {
            sub: String,
            exp: u64,
            role: String,
        }
        let verifier = TokenVerifier::new(SECRET).unwrap();
        let token = sign(
            &NoRole {
                sub: "1".into(),
                exp: in_an_hour(),
            },
            Algorithm::HS256,
            SECRET,
        );
        let err = verifier.verify(&token).unwrap_err();
        assert!(
            matches!(&err, AuthError::MissingClaim(c) if c == "role"),
            "{err}"
        );
        let token = sign(
            &OddRole {
                sub: "1".into(),
                exp: in_an_hour(),
                role: "root".into(),
            },
            Algorithm::HS256,
            SECRET,
        );
        assert!(!verifier.verify(&token).unwrap_err().is_forbidden());
    }

    #[test]
    fn missing_exp_or_sub_is_refused() {
        #[derive(Serialize)]
        struct NoExp {
            sub: String,
            role: Role,
        }
        #[derive(Serialize)]
        struct NoSub {
            role: Role,
            exp: u64,
        }
        let verifier = TokenVerifier::new(SECRET).unwrap();
        let token = sign(
            &NoExp {
                sub: "1".into(),
                role: Role::Admin,
            },
            Algorithm::HS256,
            SECRET,
        );
        assert!(matches!(verifier.verify(&token), Err(AuthError::MissingClaim(c)) if c == "exp"));
        let token = sign(
            &NoSub {
                role: Role::Admin,
                exp: in_an_hour(),
            },
            Algorithm::HS256,
            SECRET,
        );
        assert!(matches!(verifier.verify(&token), Err(AuthError::MissingClaim(c)) if c == "sub"));
    }

    #[test]
    fn garbage_is_malformed() {
        let verifier = TokenVerifier::new(SECRET).unwrap();
        for bad in ["", "abc", "a.b.c", "....."] {
            assert!(verifier.verify(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_allow_what_they_should() {
        let learner = Caller {
            subject: "1".into(),
            role: Role::Learner,
        };
        let admin = Caller {
            subject: "2".into(),
            role: Role::Admin,
        };
        assert!(require(Some(&learner), Role::Learner).is_ok());
        assert!(require(Some(&admin), Role::Learner).is_ok());
        assert!(require(Some(&admin), Role::Admin).is_ok());
        assert!(
            require(Some(&learner), Role::Admin)
                .unwrap_err()
                .is_forbidden()
        );
        assert!(matches!(
            require(None, Role::Learner),
            Err(AuthError::MissingToken)
        ));
        let operator = Caller {
            subject: "ops".into(),
            role: Role::Admin,
        };
        assert!(matches!(
            operator.require_user_id(),
            Err(AuthError::NotAUser)
        ));
    }
}
