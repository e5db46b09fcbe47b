//! Validated cache keys and invalidation patterns: the namespace is the text before the first `:`.
use crate::error::Error;

/// Longest key or pattern accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// Longest namespace: it is repeated in every stored key and in the statistics.
const MAX_NAMESPACE_BYTES: usize = 64;

/// `namespace:rest`. The namespace is a plain word (`[A-Za-z0-9_.-]`), so it never holds a glob
/// character and can be spliced into Redis key names and `SCAN MATCH` patterns unescaped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    text: String,
    colon: usize,
}

impl Key {
    /// Parses a request key; `field` names it in the error (`key`, `keys[3]`, `entries[0].key`).
    pub fn parse(text: String, field: &str) -> Result<Self, Error> {
        if text.is_empty() {
            return Err(Error::invalid(field, "must not be empty"));
        }
        if text.len() > MAX_KEY_BYTES {
            return Err(Error::invalid(
                field,
                format!("is {} bytes, at most {MAX_KEY_BYTES} allowed", text.len()),
            ));
        }
        let colon = namespace_end(&text).map_err(|why| Error::invalid(field, why))?;
        Ok(Self { text, colon })
    }

    pub fn namespace(&self) -> &str {
        &self.text[..self.colon]
    }

    /// Everything from the first `:` on (the `:` included).
    pub fn rest(&self) -> &str {
        &self.text[self.colon..]
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// What an InvalidatePattern request removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// `ns:*`: every key of the namespace, in O(1) by a generation bump.
    Namespace(String),
    /// `ns:<glob>`: the keys of `ns` whose rest (from the `:` on) matches `glob` (Redis glob syntax).
    Match { namespace: String, glob: String },
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Self, Error> {
        const FIELD: &str = "pattern";
        if text.is_empty() {
            return Err(Error::invalid(FIELD, "must not be empty"));
        }
        if text.len() > MAX_KEY_BYTES {
            return Err(Error::invalid(
                FIELD,
                format!("is {} bytes, at most {MAX_KEY_BYTES} allowed", text.len()),
            ));
        }
        let colon = namespace_end(text).map_err(|why| {
            Error::invalid(
                FIELD,
                format!("{why}: a pattern must start with a namespace, as in `catalog:*` (use Clear to remove everything)"),
            )
        })?;
        let namespace = text[..colon].to_owned();
        let glob = &text[colon..];
        // `ns:*`, `ns:**`: the whole namespace.
        if glob.len() > 1 && glob[1..].bytes().all(|b| b == b'*') {
            return Ok(Self::Namespace(namespace));
        }
        Ok(Self::Match {
            namespace,
            glob: glob.to_owned(),
        })
    }

    pub fn namespace(&self) -> &str {
        match self {
            Self::Namespace(ns) | Self::Match { namespace: ns, .. } => ns,
        }
    }
}

/// Index of the first `:`, after checking the namespace before it.
fn namespace_end(text: &str) -> Result<usize, String> {
    let Some(colon) = text.find(':') else {
        return Err("must be `namespace:...` (no `:` found)".to_owned());
    };
    let namespace = &text[..colon];
    if namespace.is_empty() {
        return Err("has an empty namespace before the first `:`".to_owned());
    }
    if namespace.len() > MAX_NAMESPACE_BYTES {
        return Err(format!(
            "namespace is longer than {MAX_NAMESPACE_BYTES} bytes"
        ));
    }
    if let Some(bad) = namespace
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "namespace `{namespace}` may only hold letters, digits, `_`, `-` and `.` (found `{bad}`)"
        ));
    }
    Ok(colon)
}

/// Escapes Redis glob characters so `text` matches only itself in `SCAN MATCH`.
pub fn escape_glob(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Redis glob matching (`stringmatchlen` semantics: `*`, `?`, `[abc]`, `[^a-z]`, `\x`), so the
/// in-process store removes exactly what `SCAN MATCH` would.
pub fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    // Backtracking point for the last `*`: (pattern index after it, text index it covers up to).
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    while p < pattern.len() && pattern[p] == b'*' {
                        p += 1;
                    }
                    if p == pattern.len() {
                        return true;
                    }
                    star = Some((p, t));
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => {
                    let (matched, next) = class_matches(pattern, p, text[t]);
                    if matched {
                        p = next;
                        t += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == text[t] {
                        p += 2;
                        t += 1;
                        continue;
                    }
                }
                c => {
                    if c == text[t] {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
            }
        }
        // Mismatch: let the last `*` swallow one more byte, or fail.
        match star {
            Some((sp, st)) => {
                star = Some((sp, st + 1));
                p = sp;
                t = st + 1;
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class starting at `pattern[start] == b'['`; returns whether it matched
/// and the index after the class. An unterminated class runs to the end of the pattern, as in Redis.
fn class_matches(pattern: &[u8], start: usize, c: u8) -> (bool, usize) {
    let mut i = start + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    while i < pattern.len() && pattern[i] != b']' {
        if pattern[i] == b'\\' && i + 1 < pattern.len() {
            i += 1;
            matched |= pattern[i] == c;
        } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' {
            let (lo, hi) = (
                pattern[i].min(pattern[i + 2]),
                pattern[i].max(pattern[i + 2]),
            );
            matched |= (lo..=hi).contains(&c);
            i += 2;
        } else {
            matched |= pattern[i] == c;
        }
        i += 1;
    }
    let next = if i < pattern.len() { i + 1 } else { i };
    (matched != negate, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_at_the_first_colon() {
        let key = Key::parse("catalog:course:a:b".into(), "key").unwrap();
        assert_eq!(key.namespace(), "catalog");
        assert_eq!(key.rest(), ":course:a:b");
    }

    #[test]
    fn bad_keys_name_the_field() {
        for bad in ["", "nocolon", ":x", "a*b:c", &"k:".repeat(300)] {
            let err = Key::parse(bad.to_owned(), "keys[2]").unwrap_err();
            assert!(err.to_string().starts_with("keys[2]"), "{err}");
        }
    }

    #[test]
    fn patterns() {
        assert_eq!(
            Pattern::parse("catalog:*").unwrap(),
            Pattern::Namespace("catalog".into())
        );
        assert_eq!(
            Pattern::parse("user:123:*").unwrap(),
            Pattern::Match {
                namespace: "user".into(),
                glob: ":123:*".into()
            }
        );
        for bad in ["*", "", "*:x", "cat*:x", "catalog"] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn glob_semantics_follow_redis() {
        let m = |p: &str, t: &str| glob_matches(p.as_bytes(), t.as_bytes());
        assert!(m(":123:*", ":123:profile"));
        assert!(!m(":123:*", ":1234:profile"));
        assert!(m(":a?c", ":abc"));
        assert!(m(":[ab]x", ":bx"));
        assert!(!m(":[^ab]x", ":bx"));
        assert!(m(":[a-c]x", ":cx"));
        assert!(m(":\\*", ":*"));
        assert!(!m(":\\*", ":a"));
        assert!(m("*b*d", "abcd"));
        assert!(!m("*b*d", "abce"));
        assert!(m(&escape_glob("a*[b]?\\"), "a*[b]?\\"));
        assert!(!m(&escape_glob("a*"), "ab"));
    }
}
