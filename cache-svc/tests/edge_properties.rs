//! Property tests of cache keys and invalidation patterns: any text parses or is refused with a
//! short message naming its field, accepted ones stay within their bounds, and the in-process
//! glob matcher removes exactly what Redis's `SCAN MATCH` would.
use cache_svc::key::{Key, MAX_KEY_BYTES, Pattern, escape_glob, glob_matches};
use proptest::{prelude::*, test_runner::Config};

const MAX_NAMESPACE_BYTES: usize = 64;
/// The longest refusal: a fixed reason plus at most the namespace it names.
const MAX_MESSAGE_BYTES: usize = 300;

fn config(cases: u32) -> Config {
    Config {
        cases,
        // A failing case is shrunk and printed; no regression files are written into the tree.
        failure_persistence: None,
        ..Config::default()
    }
}

fn namespace_char() -> impl Strategy<Value = char> + Clone {
    prop_oneof![
        8 => prop::sample::select(vec!['a', 'z', 'A', '0', '9', '_', '-', '.']),
        1 => any::<char>(),
    ]
}

/// Text shaped like a key or pattern — a namespace-ish word, maybe a `:`, a rest of glob and
/// other characters — or any text at all, sometimes over the size limit.
fn key_text() -> impl Strategy<Value = String> {
    let rest_char = prop_oneof![
        4 => proptest::char::range('a', 'c'),
        3 => prop::sample::select(vec![':', '*', '?', '[', ']', '^', '-', '\\']),
        1 => proptest::char::range('\0', '\u{1f}'),
        1 => any::<char>(),
    ];
    let namespace = prop::collection::vec(namespace_char(), 0..=MAX_NAMESPACE_BYTES + 4);
    let rest = prop::collection::vec(rest_char, 0..40);
    prop_oneof![
        6 => (namespace.clone(), prop::option::weighted(0.9, rest))
            .prop_map(|(namespace, rest)| {
                let mut text = String::from_iter(namespace);
                if let Some(rest) = rest {
                    text.push(':');
                    text.extend(rest);
                }
                text
            }),
        1 => any::<String>(),
        1 => (namespace, MAX_KEY_BYTES - 8..MAX_KEY_BYTES + 8).prop_map(|(namespace, len)| {
            let mut text = String::from_iter(namespace);
            text.push(':');
            while text.len() < len {
                text.push('k');
            }
            text
        }),
    ]
}

/// The namespace a key or pattern must start with, written out from the documented rules.
fn expected_namespace(text: &str) -> Option<&str> {
    if text.is_empty() || text.len() > MAX_KEY_BYTES {
        return None;
    }
    let (namespace, _) = text.split_once(':')?;
    let word = namespace
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    (!namespace.is_empty() && namespace.len() <= MAX_NAMESPACE_BYTES && word).then_some(namespace)
}

fn assert_refusal(message: &str, field: &str) -> Result<(), TestCaseError> {
    prop_assert!(message.starts_with(&format!("{field}: ")), "{message}");
    prop_assert!(
        message.len() <= MAX_MESSAGE_BYTES,
        "{} bytes: {message}",
        message.len()
    );
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn a_key_parses_exactly_when_it_starts_with_a_namespace(text in key_text()) {
        match (Key::parse(text.clone(), "keys[3]"), expected_namespace(&text)) {
            (Ok(key), Some(namespace)) => {
                prop_assert_eq!(key.as_str(), text.as_str());
                prop_assert_eq!(key.namespace(), namespace);
                prop_assert_eq!(format!("{}{}", key.namespace(), key.rest()), text.as_str());
                prop_assert!(key.rest().starts_with(':'));
            }
            (Err(err), None) => assert_refusal(&err.to_string(), "keys[3]")?,
            (result, expected) => prop_assert!(false, "{text:?}: {result:?}, expected namespace {expected:?}"),
        }
    }

    #[test]
    fn a_pattern_parses_exactly_when_it_starts_with_a_namespace(text in key_text()) {
        match (Pattern::parse(&text), expected_namespace(&text)) {
            (Ok(pattern), Some(namespace)) => {
                prop_assert_eq!(pattern.namespace(), namespace);
                let glob = &text[namespace.len()..];
                let whole_namespace = glob.len() > 1 && glob[1..].bytes().all(|b| b == b'*');
                match pattern {
                    Pattern::Namespace(_) => prop_assert!(whole_namespace, "{text:?}"),
                    Pattern::Match { glob: parsed, .. } => {
                        prop_assert!(!whole_namespace, "{text:?}");
                        prop_assert_eq!(parsed.as_str(), glob);
                        prop_assert!(parsed.len() < MAX_KEY_BYTES);
                    }
                }
            }
            (Err(err), None) => assert_refusal(&err.to_string(), "pattern")?,
            (result, expected) => prop_assert!(false, "{text:?}: {result:?}, expected namespace {expected:?}"),
        }
    }

    #[test]
    fn an_escaped_text_matches_itself_and_nothing_else(
        text in prop::collection::vec(any::<u8>(), 1..60),
        other in prop::collection::vec(any::<u8>(), 1..60),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let text = String::from_utf8_lossy(&text).into_owned();
        let escaped = escape_glob(&text);
        prop_assert!(glob_matches(escaped.as_bytes(), text.as_bytes()), "{escaped:?}");
        let other = String::from_utf8_lossy(&other).into_owned();
        prop_assert_eq!(glob_matches(escaped.as_bytes(), other.as_bytes()), other == text);
        let mut changed = text.clone().into_bytes();
        let at = at.index(changed.len());
        changed[at] = byte;
        prop_assert_eq!(
            glob_matches(escaped.as_bytes(), &changed),
            changed == text.as_bytes()
        );
    }

    #[test]
    fn any_glob_on_any_key_answers(
        glob in prop::collection::vec(any::<u8>(), 0..MAX_KEY_BYTES),
        text in prop::collection::vec(any::<u8>(), 1..MAX_KEY_BYTES),
        cut in any::<prop::sample::Index>(),
    ) {
        // No panic on any bytes; and a text's escaped prefix with `*` after it matches the text.
        glob_matches(&glob, &text);
        let text = String::from_utf8_lossy(&text).into_owned();
        let prefix: String = text.chars().take(cut.index(text.chars().count() + 1)).collect();
        let pattern = format!("{}*", escape_glob(&prefix));
        prop_assert!(glob_matches(pattern.as_bytes(), text.as_bytes()), "{pattern:?}");
    }
}

proptest! {
    // Small inputs over an alphabet of glob bytes: many cases, still fast.
    #![proptest_config(config(4096))]

    #[test]
    fn the_in_process_matcher_agrees_with_redis(
        glob in prop::collection::vec(glob_byte(), 0..12),
        rest in prop::collection::vec(glob_byte(), 0..12),
    ) {
        // As the in-process store matches: a pattern's glob against a key's rest, both from `:`.
        let glob = [b":".as_slice(), &glob].concat();
        let rest = [b":".as_slice(), &rest].concat();
        prop_assert_eq!(
            glob_matches(&glob, &rest),
            redis_stringmatch(&glob, &rest),
            "glob {:?} on {:?}",
            String::from_utf8_lossy(&glob),
            String::from_utf8_lossy(&rest)
        );
    }
}

/// Globs and keys over a few letters and every byte special to a glob, so they meet often.
fn glob_byte() -> impl Strategy<Value = u8> {
    prop::sample::select(b"ab:*?[]^-\\".to_vec())
}

/// Redis's `stringmatchlen` (src/util.c, case-sensitive), transcribed pointer step by pointer
/// step onto slices: the reference the in-process store must agree with.
fn redis_stringmatch(pattern: &[u8], string: &[u8]) -> bool {
    let (mut p, mut s) = (pattern, string);
    while !p.is_empty() && !s.is_empty() {
        match p[0] {
            b'*' => {
                while p.len() > 1 && p[1] == b'*' {
                    p = &p[1..];
                }
                if p.len() == 1 {
                    return true;
                }
                while !s.is_empty() {
                    if redis_stringmatch(&p[1..], s) {
                        return true;
                    }
                    s = &s[1..];
                }
                return false;
            }
            b'?' => s = &s[1..],
            b'[' => {
                p = &p[1..];
                let negate = p.first() == Some(&b'^');
                if negate {
                    p = &p[1..];
                }
                let mut matched = false;
                let mut unterminated = false;
                loop {
                    if p.len() >= 2 && p[0] == b'\\' {
                        p = &p[1..];
                        matched |= p[0] == s[0];
                    } else if p.first() == Some(&b']') {
                        break;
                    } else if p.is_empty() {
                        unterminated = true;
                        break;
                    } else if p.len() >= 3 && p[1] == b'-' {
                        let (start, end) = (p[0].min(p[2]), p[0].max(p[2]));
                        matched |= (start..=end).contains(&s[0]);
                        p = &p[2..];
                    } else {
                        matched |= p[0] == s[0];
                    }
                    p = &p[1..];
                }
                if matched == negate {
                    return false;
                }
                s = &s[1..];
                if unterminated {
                    // Redis steps back onto the class's last byte, so its step below lands on
                    // the end of the pattern: nothing is left to match the rest of the string.
                    continue;
                }
            }
            b'\\' if p.len() >= 2 => {
                p = &p[1..];
                if p[0] != s[0] {
                    return false;
                }
                s = &s[1..];
            }
            c => {
                if c != s[0] {
                    return false;
                }
                s = &s[1..];
            }
        }
        p = &p[1..];
        if s.is_empty() {
            while p.first() == Some(&b'*') {
                p = &p[1..];
            }
            break;
        }
    }
    p.is_empty() && s.is_empty()
}

#[test]
fn the_reference_matcher_follows_redis_examples() {
    let m = |p: &str, s: &str| redis_stringmatch(p.as_bytes(), s.as_bytes());
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
    assert!(m(":[ab", ":a"));
    assert!(!m(":[ab", ":ab"));
    // `a-]` is a range from `]` to `a`, and the class goes on past that `]`.
    assert!(m(":[a-]*", ":]"));
    assert!(!m(":[a-]x", ":-x"));
}

#[test]
fn a_range_ending_at_a_bracket_matches_as_in_redis() {
    // Found by `the_in_process_matcher_agrees_with_redis`: the in-process store read `[a-]` as
    // `a` or `-`, where Redis reads a range from `]` to `a` in a class that goes on.
    assert!(glob_matches(b":[a-]*", b":]"));
    assert!(glob_matches(b":[a-]*", b":_"));
    assert!(!glob_matches(b":[a-]x", b":-x"));
}
