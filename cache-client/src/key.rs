//! Typed cache keys: user-supplied segments are escaped so they can never widen a pattern or
//! collide with another key.
use std::fmt;

/// `namespace:segment:segment...`, each segment percent-escaped.
///
/// `*`, `?`, `[`, `]`, `\` (glob characters), `:` (the separator) and `%` (the escape itself) are
/// written as `%2A`, `%3F`, `%5B`, `%5D`, `%5C`, `%3A`, `%25`. The escaped text holds no glob
/// character, so a pattern built from escaped segments matches only what it names; and escaping
/// is one-to-one, so two different segment lists never give the same key.
///
/// ```
/// use learnhub_cache_client::CacheKey;
/// let key = CacheKey::new("catalog").push("course").push_str("intro-to-*sql:");
/// assert_eq!(key.as_str(), "catalog:course:intro-to-%2Asql%3A");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    text: String,
    namespace_len: usize,
}

impl CacheKey {
    /// A key in `namespace` — a constant of the calling code such as `catalog` or `user` (letters,
    /// digits, `_`, `-`, `.`; anything else is escaped, which cache-svc then refuses, so such keys
    /// are never cached and the loader always runs).
    pub fn new(namespace: &str) -> Self {
        let text = escape(namespace);
        Self {
            namespace_len: text.len(),
            text,
        }
    }

    /// Appends a segment (any `Display`: ids, enums, strings), escaped.
    pub fn push(self, segment: impl fmt::Display) -> Self {
        self.push_str(&segment.to_string())
    }

    /// Appends a user-supplied string segment (slug, email, filter value), escaped.
    pub fn push_str(mut self, segment: &str) -> Self {
        self.text.push(':');
        self.text.push_str(&escape(segment));
        self
    }

    pub fn namespace(&self) -> &str {
        &self.text[..self.namespace_len]
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Every key below this one (`this:*`), e.g. all pages of one course list.
    pub fn children(&self) -> CachePattern {
        CachePattern(format!("{}:*", self.text))
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What [`crate::CacheClient::invalidate`] removes: a whole namespace (O(1) in cache-svc) or the
/// keys below a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CachePattern(String);

impl CachePattern {
    /// Every key of the namespace: `namespace:*`.
    pub fn namespace(namespace: &str) -> Self {
        Self(format!("{}:*", escape(namespace)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The namespace the pattern lies in (its text up to the first `:`, which escaping keeps a
    /// real separator).
    pub fn key_namespace(&self) -> &str {
        self.0.split(':').next().unwrap_or_default()
    }
}

impl fmt::Display for CachePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn escape(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for c in segment.chars() {
        match c {
            '*' => out.push_str("%2A"),
            '?' => out.push_str("%3F"),
            '[' => out.push_str("%5B"),
            ']' => out.push_str("%5D"),
            '\\' => out.push_str("%5C"),
            ':' => out.push_str("%3A"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_characters_are_escaped() {
        let key = CacheKey::new("user").push_str("a*b?c[d]e\\f:g%h");
        assert_eq!(key.as_str(), "user:a%2Ab%3Fc%5Bd%5De%5Cf%3Ag%25h");
        assert_eq!(key.namespace(), "user");
        assert!(!key.as_str()[5..].contains(['*', '?', '[', ']', '\\', ':']));
    }

    #[test]
    fn different_segments_never_collide() {
        let pairs = [
            (vec!["a:b"], vec!["a", "b"]),
            (vec!["%3A"], vec![":"]),
            (vec!["a%"], vec!["a%25"]),
            (vec![""], vec![]),
        ];
        for (left, right) in pairs {
            let build = |segments: &[&str]| {
                segments
                    .iter()
                    .fold(CacheKey::new("ns"), |key, s| key.push_str(s))
            };
            assert_ne!(build(&left), build(&right), "{left:?} vs {right:?}");
        }
    }

    #[test]
    fn patterns() {
        assert_eq!(CachePattern::namespace("catalog").as_str(), "catalog:*");
        assert_eq!(
            CachePattern::namespace("catalog").key_namespace(),
            "catalog"
        );
        assert_eq!(
            CacheKey::new("a%b").push(1).children().key_namespace(),
            "a%25b"
        );
        let key = CacheKey::new("user").push(42);
        assert_eq!(key.children().as_str(), "user:42:*");
        assert_eq!(
            CacheKey::new("user").push_str("*").children().as_str(),
            "user:%2A:*"
        );
    }
}
