//! Caller authentication: HS256 JWTs (`sub` = user id, `role` = learner|admin, `exp`; `nbf`,
//! `iss`, `aud` and the lifetime checked too), verified with the current secret or a previous one.
use std::{fmt, time::Duration};

use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation,
    errors::{Error as JwtError, ErrorKind},
    get_current_timestamp,
};
use serde::{Deserialize, Serialize};

/// The shortest secret a verifier accepts (HS256's hash size): a shorter one, usually typed by a
/// person, can be guessed offline from a single token.
pub const MIN_SECRET_BYTES: usize = 32;
/// The longest token lifetime accepted unless configured otherwise (`--auth-max-token-hours`).
pub const DEFAULT_MAX_TOKEN_HOURS: u64 = 24;
/// Small clock skew between the issuer and this gateway; not a grace period.
const LEEWAY_SECS: u64 = 5;

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
}

/// The `aud` claim: one recipient or several (RFC 7519 allows both).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub subject: String,
    pub role: Role,
}

impl Caller {
    /// The user id the token names; `None` for an admin token with subject `0`, which names no
    /// user (`learnhub token --admin`).
    pub fn user_id(&self) -> Option<i64> {
        self.subject.parse().ok().filter(|id: &i64| *id > 0)
    }

    /// The user id, required by calls that act on the caller's own data.
    pub fn require_user_id(&self) -> Result<i64, AuthError> {
        self.user_id().ok_or(AuthError::NotAUser)
    }
}

/// Why a call was refused. Everything but `Forbidden` is "who are you?" (401 / UNAUTHENTICATED).
/// No message carries the token or a secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send `authorization: Bearer <JWT>`")]
    MissingToken,
    #[error("the authorization header must be `Bearer <JWT>`")]
    MalformedHeader,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token signature is invalid")]
    BadSignature,
    #[error("the token must be signed with HS256")]
    WrongAlgorithm,
    #[error("the token lacks the `{0}` claim")]
    MissingClaim(String),
    #[error("the token was not issued by the expected issuer")]
    WrongIssuer,
    #[error("the token is not meant for this audience")]
    WrongAudience,
    #[error("the token is valid for longer than this gateway accepts")]
    LifetimeTooLong,
    #[error(
        "the token subject must be a user id: a positive integer without sign or leading zeros"
    )]
    BadSubject,
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

/// Why a [`TokenVerifier`] cannot be built (start-up only). Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifierConfigError {
    #[error("must be at least {MIN_SECRET_BYTES} bytes (e.g. `openssl rand -hex 32`)")]
    SecretTooShort,
    #[error(
        "secret number {position} of the list must be at least {MIN_SECRET_BYTES} bytes (e.g. `openssl rand -hex 32`)"
    )]
    PreviousSecretTooShort { position: usize },
    #[error("must be at least 1 hour")]
    NoLifetime,
}

/// What a token must say besides carrying a good signature (the gateway's `--auth-*` flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRules {
    /// The `iss` every token must carry; any or none when unset.
    pub issuer: Option<String>,
    /// The `aud` every token must name; when unset, a token naming any audience is refused.
    pub audience: Option<String>,
    /// The longest lifetime accepted: `exp - iat`, or `exp - now` for a token without `iat`.
    pub max_lifetime: Duration,
}

impl Default for TokenRules {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            max_lifetime: Duration::from_secs(DEFAULT_MAX_TOKEN_HOURS * 3600),
        }
    }
}

/// Signs a token for `subject` with `role`, valid for `ttl` (the monolith's `token` command and tests).
pub fn issue_token(
    secret: &str,
    subject: &str,
    role: Role,
    ttl: Duration,
) -> Result<String, AuthError> {
    issue_token_with(secret, subject, role, ttl, &TokenRules::default())
}

/// [`issue_token`] for a gateway with these rules: `iss` and `aud` are set when they are given.
pub fn issue_token_with(
    secret: &str,
    subject: &str,
    role: Role,
    ttl: Duration,
    rules: &TokenRules,
) -> Result<String, AuthError> {
    let now = get_current_timestamp();
    let claims = Claims {
        sub: subject.to_owned(),
        role,
        exp: now.saturating_add(ttl.as_secs()),
        iat: Some(now),
        nbf: None,
        iss: rules.issuer.clone(),
        aud: rules.audience.clone().map(Audience::One),
    };
    let key = EncodingKey::from_secret(secret.as_bytes()).map_err(|_| AuthError::EmptySecret)?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).map_err(AuthError::Sign)
}

/// Checks tokens against the shared secret (and, during a rotation, the previous ones). Cheap to
/// clone; the secrets never leave it.
#[derive(Clone)]
pub struct TokenVerifier {
    /// The current secret's key first, then the previous secrets' in the order given.
    keys: Vec<DecodingKey>,
    validation: Validation,
    max_lifetime_secs: u64,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier").finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// A verifier for `secret` with the default rules.
    pub fn new(secret: &str) -> Result<Self, VerifierConfigError> {
        Self::with_rules(secret, &[], TokenRules::default())
    }

    /// A verifier accepting tokens signed with `secret` or any of `previous` (a rotation in
    /// progress) that satisfy `rules`. Every secret needs [`MIN_SECRET_BYTES`].
    pub fn with_rules(
        secret: &str,
        previous: &[&str],
        rules: TokenRules,
    ) -> Result<Self, VerifierConfigError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(VerifierConfigError::SecretTooShort);
        }
        if let Some(index) = previous.iter().position(|old| old.len() < MIN_SECRET_BYTES) {
            return Err(VerifierConfigError::PreviousSecretTooShort {
                position: index + 1,
            });
        }
        if rules.max_lifetime.is_zero() {
            return Err(VerifierConfigError::NoLifetime);
        }
        let keys = std::iter::once(secret)
            .chain(previous.iter().copied())
            .map(|secret| DecodingKey::from_secret(secret.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| VerifierConfigError::SecretTooShort)?;
        let mut validation = Validation::new(Algorithm::HS256);
        let mut required = vec!["exp", "sub"];
        validation.validate_nbf = true;
        if let Some(issuer) = &rules.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        if let Some(audience) = &rules.audience {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        validation.leeway = LEEWAY_SECS;
        Ok(Self {
            keys,
            validation,
            max_lifetime_secs: rules.max_lifetime.as_secs(),
        })
    }

    /// Verifies a bare token.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let claims = self.decode(token)?;
        self.check_lifetime(&claims)?;
        check_subject(&claims.sub, claims.role)?;
        Ok(Caller {
            subject: claims.sub,
            role: claims.role,
        })
    }

    /// The claims under the first key whose signature matches; the claims are checked (`exp`,
    /// `nbf`, `iss`, `aud`) only under that key.
    fn decode(&self, token: &str) -> Result<Claims, AuthError> {
        for key in &self.keys {
            match jsonwebtoken::decode::<Claims>(token, key, &self.validation) {
                Ok(data) => return Ok(data.claims),
                Err(err) if matches!(err.kind(), ErrorKind::InvalidSignature) => {}
                Err(err) => return Err(auth_error(&err)),
            }
        }
        Err(AuthError::BadSignature)
    }

    /// A token may not live longer than the maximum, counted from `iat` — or from now when `iat`
    /// is absent or in the future, so a forward-dated `iat` cannot stretch it.
    fn check_lifetime(&self, claims: &Claims) -> Result<(), AuthError> {
        let now = get_current_timestamp();
        let start = claims.iat.map_or(now, |iat| iat.min(now));
        let lifetime = claims.exp.saturating_sub(start);
        if lifetime > self.max_lifetime_secs.saturating_add(LEEWAY_SECS) {
            return Err(AuthError::LifetimeTooLong);
        }
        Ok(())
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

/// The refusal a `jsonwebtoken` error stands for (its message is never shown: it may quote input).
fn auth_error(err: &JwtError) -> AuthError {
    match err.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => AuthError::WrongAlgorithm,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim.clone()),
        // A claim our `Claims` needs but the token lacks fails deserialisation.
        ErrorKind::Json(json) => missing_field(&json.to_string())
            .map_or(AuthError::Malformed, |claim| {
                AuthError::MissingClaim(claim.into())
            }),
        _ => AuthError::Malformed,
    }
}

/// `exp` from serde's "missing field `exp` at line 1 column 9".
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// `sub` must spell a user id one way only — ASCII digits, no sign, no leading zero, within
/// `i64` — so logs, caches and the services never see two spellings of one user. `0` names no
/// user and is only an admin's (`learnhub token --admin`).
fn check_subject(sub: &str, role: Role) -> Result<(), AuthError> {
    let digits_only = !sub.is_empty() && sub.bytes().all(|byte| byte.is_ascii_digit());
    let no_leading_zero = sub == "0" || !sub.starts_with('0');
    match sub.parse::<i64>() {
        Ok(id) if digits_only && no_leading_zero && (id > 0 || role == Role::Admin) => Ok(()),
        _ => Err(AuthError::BadSubject),
    }
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
    const PREVIOUS: &str = "the-previous-secret-still-accepted-0123";

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

    /// Claims with only the required ones set.
    fn claims(sub: &str, role: Role, exp: u64) -> Claims {
        Claims {
            sub: sub.into(),
            role,
            exp,
            iat: None,
            nbf: None,
            iss: None,
            aud: None,
        }
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
        let claims = claims("1", Role::Admin, get_current_timestamp() - 3600);
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
        let claims = claims("1", Role::Admin, in_an_hour());
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

    #[test]
    fn secrets_shorter_than_32_bytes_are_refused() {
        let short = "a-secret-of-thirty-one-bytes-..";
        assert_eq!(short.len(), MIN_SECRET_BYTES - 1);
        let err = TokenVerifier::new(short).unwrap_err();
        assert_eq!(err, VerifierConfigError::SecretTooShort);
        assert!(!err.to_string().contains(short), "{err}");
        assert!(TokenVerifier::new(&"x".repeat(MIN_SECRET_BYTES)).is_ok());
        assert!(TokenVerifier::new("").is_err());
        let err = TokenVerifier::with_rules(SECRET, &[PREVIOUS, short], TokenRules::default())
            .unwrap_err();
        assert_eq!(
            err,
            VerifierConfigError::PreviousSecretTooShort { position: 2 }
        );
        assert!(!err.to_string().contains(short), "{err}");
        let rules = TokenRules {
            max_lifetime: Duration::ZERO,
            ..TokenRules::default()
        };
        assert_eq!(
            TokenVerifier::with_rules(SECRET, &[], rules).unwrap_err(),
            VerifierConfigError::NoLifetime
        );
    }

    #[test]
    fn a_token_not_valid_yet_is_refused() {
        let verifier = TokenVerifier::new(SECRET).unwrap();
        let now = get_current_timestamp();
        let mut future = claims("7", Role::Learner, now + 7200);
        future.nbf = Some(now + 3600);
        assert!(matches!(
            verifier.verify(&sign(&future, Algorithm::HS256, SECRET)),
            Err(AuthError::NotYetValid)
        ));
        // Valid from a moment ago, or from within the clock-skew leeway.
        for nbf in [now - 60, now + 2] {
            let mut claims = claims("7", Role::Learner, now + 3600);
            claims.nbf = Some(nbf);
            assert!(
                verifier
                    .verify(&sign(&claims, Algorithm::HS256, SECRET))
                    .is_ok()
            );
        }
    }

    #[test]
    fn the_issuer_is_checked_when_configured() {
        let rules = TokenRules {
            issuer: Some("https://auth.learnhub.example".into()),
            ..TokenRules::default()
        };
        let verifier = TokenVerifier::with_rules(SECRET, &[], rules.clone()).unwrap();
        let hour = Duration::from_secs(3600);
        let token = issue_token_with(SECRET, "7", Role::Learner, hour, &rules).unwrap();
        assert_eq!(verifier.verify(&token).unwrap().subject, "7");
        let other = TokenRules {
            issuer: Some("https://evil.example".into()),
            ..TokenRules::default()
        };
        let token = issue_token_with(SECRET, "7", Role::Learner, hour, &other).unwrap();
        assert!(matches!(
            verifier.verify(&token),
            Err(AuthError::WrongIssuer)
        ));
        let token = issue_token(SECRET, "7", Role::Learner, hour).unwrap();
        assert!(matches!(verifier.verify(&token), Err(AuthError::MissingClaim(c)) if c == "iss"));
        // Not configured: any issuer will do.
        let token = issue_token_with(SECRET, "7", Role::Learner, hour, &other).unwrap();
        assert!(TokenVerifier::new(SECRET).unwrap().verify(&token).is_ok());
    }

    #[test]
    fn the_audience_is_checked_when_configured() {
        let rules = TokenRules {
            audience: Some("learnhub-gateway".into()),
            ..TokenRules::default()
        };
        let verifier = TokenVerifier::with_rules(SECRET, &[], rules.clone()).unwrap();
        let hour = Duration::from_secs(3600);
        let token = issue_token_with(SECRET, "7", Role::Learner, hour, &rules).unwrap();
        assert!(verifier.verify(&token).is_ok());
        // One of several audiences.
        let mut several = claims("7", Role::Learner, in_an_hour());
        several.aud = Some(Audience::Many(vec![
            "billing".into(),
            "learnhub-gateway".into(),
        ]));
        assert!(
            verifier
                .verify(&sign(&several, Algorithm::HS256, SECRET))
                .is_ok()
        );
        let other = TokenRules {
            audience: Some("billing".into()),
            ..TokenRules::default()
        };
        let elsewhere = issue_token_with(SECRET, "7", Role::Learner, hour, &other).unwrap();
        assert!(matches!(
            verifier.verify(&elsewhere),
            Err(AuthError::WrongAudience)
        ));
        let token = issue_token(SECRET, "7", Role::Learner, hour).unwrap();
        assert!(matches!(verifier.verify(&token), Err(AuthError::MissingClaim(c)) if c == "aud"));
        // Not configured: a token meant for someone else is still not for us.
        assert!(matches!(
            TokenVerifier::new(SECRET).unwrap().verify(&elsewhere),
            Err(AuthError::WrongAudience)
        ));
    }

    #[test]
    fn a_token_living_too_long_is_refused() {
        let verifier = TokenVerifier::new(SECRET).unwrap();
        let day = DEFAULT_MAX_TOKEN_HOURS * 3600;
        let token = issue_token(SECRET, "7", Role::Learner, Duration::from_secs(day)).unwrap();
        assert!(verifier.verify(&token).is_ok());
        let token = issue_token(SECRET, "7", Role::Learner, Duration::from_secs(day + 60)).unwrap();
        assert!(matches!(
            verifier.verify(&token),
            Err(AuthError::LifetimeTooLong)
        ));
        let now = get_current_timestamp();
        // Without `iat`, what is left counts.
        let no_iat = claims("7", Role::Learner, now + day + 60);
        assert!(matches!(
            verifier.verify(&sign(&no_iat, Algorithm::HS256, SECRET)),
            Err(AuthError::LifetimeTooLong)
        ));
        // A forward-dated `iat` does not shorten a ten-year token.
        let mut forward = claims("7", Role::Learner, now + 10 * 365 * day);
        forward.iat = Some(forward.exp - 60);
        assert!(matches!(
            verifier.verify(&sign(&forward, Algorithm::HS256, SECRET)),
            Err(AuthError::LifetimeTooLong)
        ));
        // An old token whose whole span is too long, even with little left.
        let mut stretched = claims("7", Role::Learner, now + 60);
        stretched.iat = Some(now - day);
        assert!(matches!(
            verifier.verify(&sign(&stretched, Algorithm::HS256, SECRET)),
            Err(AuthError::LifetimeTooLong)
        ));
        // A configured maximum.
        let rules = TokenRules {
            max_lifetime: Duration::from_secs(3600),
            ..TokenRules::default()
        };
        let verifier = TokenVerifier::with_rules(SECRET, &[], rules).unwrap();
        let token = issue_token(SECRET, "7", Role::Learner, Duration::from_secs(7200)).unwrap();
        assert!(matches!(
            verifier.verify(&token),
            Err(AuthError::LifetimeTooLong)
        ));
        let token = issue_token(SECRET, "7", Role::Learner, Duration::from_secs(3600)).unwrap();
        assert!(verifier.verify(&token).is_ok());
    }

    #[test]
    fn subjects_must_be_canonical_user_ids() {
        let verifier = TokenVerifier::new(SECRET).unwrap();
        let verify = |sub: &str, role: Role| {
            verifier.verify(&sign(
                &claims(sub, role, in_an_hour()),
                Algorithm::HS256,
                SECRET,
            ))
        };
        for bad in [
            "007",
            "+7",
            " 7",
            "7 ",
            "-1",
            "9223372036854775808",
            "",
            "0x7",
            "1e3",
            "\u{0667}",
            "ops",
        ] {
            for role in [Role::Learner, Role::Admin] {
                assert!(
                    matches!(verify(bad, role), Err(AuthError::BadSubject)),
                    "{bad:?} as {role}"
                );
            }
        }
        for good in ["1", "7", "42", "9223372036854775807"] {
            assert_eq!(verify(good, Role::Learner).unwrap().subject, good);
        }
        // `0` names no user: only an admin token (`learnhub token --admin`) may carry it.
        assert!(matches!(
            verify("0", Role::Learner),
            Err(AuthError::BadSubject)
        ));
        let admin = verify("0", Role::Admin).unwrap();
        assert_eq!(admin.user_id(), None);
    }

    #[test]
    fn a_previous_secret_verifies_during_a_rotation() {
        let verifier =
            TokenVerifier::with_rules(SECRET, &[PREVIOUS], TokenRules::default()).unwrap();
        let minute = Duration::from_secs(60);
        for secret in [SECRET, PREVIOUS] {
            let token = issue_token(secret, "7", Role::Learner, minute).unwrap();
            assert_eq!(verifier.verify(&token).unwrap().subject, "7");
        }
        let unknown = "an-unknown-secret-of-at-least-32-bytes";
        let token = issue_token(unknown, "7", Role::Learner, minute).unwrap();
        assert!(matches!(
            verifier.verify(&token),
            Err(AuthError::BadSignature)
        ));
        // Once the rotation is over the previous secret no longer verifies.
        let token = issue_token(PREVIOUS, "7", Role::Learner, minute).unwrap();
        assert!(matches!(
            TokenVerifier::new(SECRET).unwrap().verify(&token),
            Err(AuthError::BadSignature)
        ));
        // Under the previous secret the claims are still checked.
        let expired = claims("7", Role::Learner, get_current_timestamp() - 3600);
        assert!(matches!(
            verifier.verify(&sign(&expired, Algorithm::HS256, PREVIOUS)),
            Err(AuthError::Expired)
        ));
    }

    #[test]
    fn refusals_never_quote_the_token_or_a_secret() {
        let verifier =
            TokenVerifier::with_rules(SECRET, &[PREVIOUS], TokenRules::default()).unwrap();
        let now = get_current_timestamp();
        let mut future = claims("7", Role::Learner, now + 7200);
        future.nbf = Some(now + 3600);
        let tokens = [
            sign(&future, Algorithm::HS256, SECRET),
            sign(
                &claims("007", Role::Learner, now + 60),
                Algorithm::HS256,
                SECRET,
            ),
            sign(
                &claims("7", Role::Learner, now - 3600),
                Algorithm::HS256,
                PREVIOUS,
            ),
            issue_token(
                "an-unknown-secret-of-at-least-32-bytes",
                "7",
                Role::Admin,
                Duration::from_secs(60),
            )
            .unwrap(),
            "not.a.token".to_owned(),
        ];
        for token in tokens {
            let message = verifier.verify(&token).unwrap_err().to_string();
            for secret_text in [token.as_str(), SECRET, PREVIOUS] {
                assert!(!message.contains(secret_text), "{message}");
            }
        }
    }
}
