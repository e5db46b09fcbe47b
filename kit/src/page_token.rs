//! Opaque keyset-pagination tokens: the position after the last row of a page.
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

/// A keyset cursor. Encoded as URL-safe base64 of `v1:<key>:<id>` so callers treat it as opaque
/// and a tampered token is refused instead of silently returning the wrong page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageToken {
    /// The sort key of the last row served (the id itself when rows are ordered by id).
    pub key: i64,
    /// The id of the last row served (tie-breaker).
    pub id: i64,
}

impl PageToken {
    pub fn after_id(id: i64) -> Self {
        Self { key: id, id }
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("v1:{}:{}", self.key, self.id))
    }

    /// `Ok(None)` for the empty token (first page); `Err` for anything that is not a token of ours.
    pub fn decode(token: &str) -> Result<Option<Self>, InvalidPageToken> {
        if token.is_empty() {
            return Ok(None);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| InvalidPageToken)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| InvalidPageToken)?;
        let mut parts = text.split(':');
        let (Some("v1"), Some(key), Some(id), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(InvalidPageToken);
        };
        let key = key.parse().map_err(|_| InvalidPageToken)?;
        let id = id.parse().map_err(|_| InvalidPageToken)?;
        Ok(Some(Self { key, id }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("page_token is not a token returned by this service")]
pub struct InvalidPageToken;

/// Validates a requested page size: 0 means `default`, otherwise it must be within 1..=`max`.
pub fn page_size(requested: i32, default: i64, max: i64) -> Result<i64, String> {
    match i64::from(requested) {
        0 => Ok(default),
        n if (1..=max).contains(&n) => Ok(n),
        n => Err(format!("page_size must be between 1 and {max}, got {n}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let token = PageToken { key: 42, id: 7 };
        assert_eq!(PageToken::decode(&token.encode()), Ok(Some(token)));
        assert_eq!(PageToken::decode(""), Ok(None));
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "!!",
            "abc",
            &URL_SAFE_NO_PAD.encode("v2:1:1"),
            &URL_SAFE_NO_PAD.encode("v1:x:1"),
            &URL_SAFE_NO_PAD.encode("v1:1:2:3"),
        ] {
            assert_eq!(PageToken::decode(bad), Err(InvalidPageToken), "{bad}");
        }
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(0, 20, 100), Ok(20));
        assert_eq!(page_size(100, 20, 100), Ok(100));
        assert!(page_size(101, 20, 100).is_err());
        assert!(page_size(-1, 20, 100).is_err());
    }
}
