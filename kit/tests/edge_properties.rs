//! Property tests of the kit's edge parsers: page tokens and the input validators never panic,
//! agree with the rules they document, and answer in bounded, field-naming messages.
use learnhub_kit::{
    PageToken,
    page_token::{InvalidPageToken, page_size},
    validate::{self, Invalid, MAX_BODY_CHARS, MAX_SLUG_CHARS, MAX_TITLE_CHARS},
};
use proptest::{prelude::*, test_runner::Config};

/// The longest refusal reason any validator gives, whatever the input's length.
const MAX_REASON_BYTES: usize = 100;

fn config(cases: u32) -> Config {
    Config {
        cases,
        // A failing case is shrunk and printed; no regression files are written into the tree.
        failure_persistence: None,
        ..Config::default()
    }
}

/// Characters the validators treat specially, mixed with any character at all.
fn edge_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => any::<char>(),
        4 => proptest::char::range('a', 'z'),
        2 => prop::sample::select(vec!['-', '0', '7', ' ', '.', '_', 'A', 'é', '✓']),
        2 => proptest::char::range('\0', '\u{1f}'),
        1 => proptest::char::range('\u{7f}', '\u{9f}'),
        2 => proptest::char::range('\u{202A}', '\u{202E}'),
        2 => proptest::char::range('\u{2066}', '\u{2069}'),
        // Direction marks and the Arabic letter mark: text, not overrides.
        1 => prop::sample::select(vec!['\u{200E}', '\u{200F}', '\u{061C}', '\u{3000}', '\u{A0}']),
    ]
}

fn edge_string(max_chars: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(edge_char(), 0..=max_chars).prop_map(String::from_iter)
}

/// The characters text never holds, written out by code point (not with `char::is_control`).
fn forbidden(c: char, multi_line: bool) -> bool {
    let code = u32::from(c);
    let control = code < 0x20 || (0x7f..=0x9f).contains(&code);
    let line_control = matches!(c, '\t' | '\n' | '\r');
    let bidi = (0x202A..=0x202E).contains(&code) || (0x2066..=0x2069).contains(&code);
    (control && !(multi_line && line_control)) || bidi
}

/// The first forbidden character and its index in characters.
fn first_forbidden(text: &str, multi_line: bool) -> Option<(usize, char)> {
    text.chars()
        .enumerate()
        .find(|&(_, c)| forbidden(c, multi_line))
}

/// A refusal names its field, reads `field: reason`, and stays short however long the input.
fn assert_refusal(err: &Invalid, field: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(err.field, field);
    prop_assert_eq!(err.to_string(), format!("{field}: {}", err.reason));
    prop_assert!(!err.reason.is_empty());
    prop_assert!(
        err.reason.len() <= MAX_REASON_BYTES,
        "reason of {} bytes: {}",
        err.reason.len(),
        err.reason
    );
    Ok(())
}

/// A refusal for a forbidden character names that character and where it is.
fn assert_names_character(err: &Invalid, at: usize, c: char) -> Result<(), TestCaseError> {
    let expected = format!("(U+{:04X} at character {at})", u32::from(c));
    prop_assert!(
        err.reason.ends_with(&expected),
        "{:?} should end with {expected:?}",
        err.reason
    );
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn a_page_token_decodes_to_the_position_it_encodes(key in any::<i64>(), id in any::<i64>()) {
        let token = PageToken { key, id };
        let text = token.encode();
        // Opaque, URL-safe and short: `v1:` and two i64s in base64.
        prop_assert!(!text.is_empty() && text.len() <= 60, "{text}");
        prop_assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        prop_assert_eq!(PageToken::decode(&text), Ok(Some(token)));
    }

    #[test]
    fn any_text_decodes_to_a_token_of_ours_or_is_refused(text in prop_oneof![
        edge_string(80),
        "[A-Za-z0-9_-]{0,80}",
    ]) {
        match PageToken::decode(&text) {
            Ok(None) => prop_assert!(text.is_empty()),
            Ok(Some(token)) => {
                prop_assert_eq!(PageToken::decode(&token.encode()), Ok(Some(token)));
            }
            Err(err) => {
                prop_assert!(!text.is_empty());
                let message = err.to_string();
                prop_assert!(message.starts_with("page_token"), "{message}");
                prop_assert!(message.len() <= MAX_REASON_BYTES);
            }
        }
    }

    #[test]
    fn a_token_is_accepted_only_as_v1_and_two_integers(
        version in prop::sample::select(vec!["v1", "v2", "V1", "", "v1 "]),
        key in "[+-]?[0-9]{0,21}|[0-9a-z:]{0,4}",
        id in "[+-]?[0-9]{0,21}|[0-9a-z:]{0,4}",
    ) {
        let text = format!("{version}:{key}:{id}");
        let token = base64_url(text.as_bytes());
        let expected = match (version, key.parse::<i64>(), id.parse::<i64>()) {
            ("v1", Ok(key), Ok(id)) => Ok(Some(PageToken { key, id })),
            _ => Err(InvalidPageToken),
        };
        prop_assert_eq!(PageToken::decode(&token), expected, "{}", text);
    }

    #[test]
    fn a_tampered_token_never_reads_as_the_original(
        key in any::<i64>(),
        id in any::<i64>(),
        at in any::<prop::sample::Index>(),
        replacement in "[A-Za-z0-9_=+/.-]",
    ) {
        let token = PageToken { key, id };
        let text = token.encode();
        let at = at.index(text.len());
        prop_assume!(text[at..=at] != replacement);
        let tampered = format!("{}{replacement}{}", &text[..at], &text[at + 1..]);
        prop_assert_ne!(PageToken::decode(&tampered), Ok(Some(token)), "{}", tampered);
    }

    #[test]
    fn page_size_is_the_default_or_within_bounds(
        requested in prop_oneof![any::<i32>(), -5..205i32],
        default in 1..=100i64,
        max in 1..=200i64,
    ) {
        match page_size(requested, default, max) {
            Ok(size) if requested == 0 => prop_assert_eq!(size, default),
            Ok(size) => {
                prop_assert_eq!(size, i64::from(requested));
                prop_assert!((1..=max).contains(&size));
            }
            Err(message) => {
                prop_assert!(requested != 0 && !(1..=max).contains(&i64::from(requested)));
                prop_assert!(message.starts_with("page_size"), "{message}");
                prop_assert!(message.len() <= MAX_REASON_BYTES, "{message}");
            }
        }
    }

    #[test]
    fn a_slug_is_accepted_exactly_when_it_follows_the_slug_rules(text in prop_oneof![
        edge_string(120),
        "[a-z0-9-]{0,110}",
        "[0-9]{1,5}",
    ]) {
        let follows_rules = (1..=MAX_SLUG_CHARS).contains(&text.chars().count())
            && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !text.starts_with('-')
            && !text.ends_with('-')
            && !text.chars().all(|c| c.is_ascii_digit());
        match validate::slug("category", &text) {
            Ok(slug) => {
                prop_assert!(follows_rules, "{text:?} accepted");
                prop_assert_eq!(slug, text.as_str());
            }
            Err(err) => {
                prop_assert!(!follows_rules, "{text:?} refused: {err}");
                assert_refusal(&err, "category")?;
            }
        }
    }

    #[test]
    fn single_line_text_holds_no_control_character_and_no_bidi_override(text in edge_string(200)) {
        match (validate::single_line("name", &text), first_forbidden(&text, false)) {
            (Ok(accepted), None) => prop_assert_eq!(accepted, text.as_str()),
            (Err(err), Some((at, c))) => {
                assert_refusal(&err, "name")?;
                assert_names_character(&err, at, c)?;
            }
            (result, first) => prop_assert!(false, "{text:?}: {result:?}, first forbidden {first:?}"),
        }
    }

    #[test]
    fn multi_line_text_keeps_only_tab_and_line_breaks_among_controls(text in edge_string(200)) {
        match (validate::multi_line("code", &text), first_forbidden(&text, true)) {
            (Ok(accepted), None) => prop_assert_eq!(accepted, text.as_str()),
            (Err(err), Some((at, c))) => {
                assert_refusal(&err, "code")?;
                assert_names_character(&err, at, c)?;
            }
            (result, first) => prop_assert!(false, "{text:?}: {result:?}, first forbidden {first:?}"),
        }
    }

    #[test]
    fn a_title_is_trimmed_one_line_text_within_its_length(
        text in edge_string(60),
        max in prop_oneof![0..=60usize, Just(MAX_TITLE_CHARS)],
    ) {
        let trimmed = text.trim();
        let follows_rules = first_forbidden(&text, false).is_none()
            && !trimmed.is_empty()
            && trimmed.chars().count() <= max;
        match validate::title("title", &text, max) {
            Ok(title) => {
                prop_assert!(follows_rules, "{text:?} accepted");
                prop_assert_eq!(title, trimmed);
                prop_assert!(first_forbidden(title, true).is_none());
            }
            Err(err) => {
                prop_assert!(!follows_rules, "{text:?} refused: {err}");
                assert_refusal(&err, "title")?;
            }
        }
    }

    #[test]
    fn free_text_is_multi_line_text_within_its_length(
        text in edge_string(60),
        max in 0..=60usize,
    ) {
        let follows_rules = first_forbidden(&text, true).is_none() && text.chars().count() <= max;
        match validate::text("summary", &text, max) {
            Ok(accepted) => {
                prop_assert!(follows_rules, "{text:?} accepted");
                prop_assert_eq!(accepted, text.as_str());
            }
            Err(err) => {
                prop_assert!(!follows_rules, "{text:?} refused: {err}");
                assert_refusal(&err, "summary")?;
            }
        }
    }

    #[test]
    fn an_id_is_accepted_exactly_when_positive(value in any::<i64>()) {
        match validate::id("lesson_id", value) {
            Ok(id) => prop_assert!(id == value && value > 0),
            Err(err) => {
                prop_assert!(value <= 0);
                assert_refusal(&err, "lesson_id")?;
            }
        }
    }
}

proptest! {
    // Inputs of up to 2.5 times the largest field: fewer cases.
    #![proptest_config(config(24))]

    #[test]
    fn huge_text_is_refused_in_a_short_message_naming_where(
        len in 0..=MAX_BODY_CHARS * 5 / 2,
        at in any::<prop::sample::Index>(),
        bad in prop_oneof![
            proptest::char::range('\0', '\u{8}'),
            Just('\u{7f}'),
            Just('\u{9b}'),
            proptest::char::range('\u{202A}', '\u{202E}'),
            Just('\u{2067}'),
        ],
    ) {
        // Two-byte characters, so byte and character positions differ.
        let mut chars = vec!['é'; len];
        let at = at.index(len + 1);
        chars.insert(at, bad);
        let text = String::from_iter(chars);
        let err = validate::single_line("title", &text).unwrap_err();
        assert_refusal(&err, "title")?;
        assert_names_character(&err, at, bad)?;
        let err = validate::text("body", &text, MAX_BODY_CHARS).unwrap_err();
        assert_refusal(&err, "body")?;
        if len < MAX_BODY_CHARS {
            assert_names_character(&err, at, bad)?;
        } else {
            prop_assert_eq!(err.reason, format!("at most {MAX_BODY_CHARS} characters"));
        }
        let err = validate::slug("slug", &text).unwrap_err();
        assert_refusal(&err, "slug")?;
        let err = PageToken::decode(&text).unwrap_err();
        prop_assert!(err.to_string().len() <= MAX_REASON_BYTES);
    }
}

/// URL-safe base64 without padding, written out here so the test does not share the encoder it
/// checks.
fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let word = chunk
            .iter()
            .enumerate()
            .fold(0u32, |word, (i, &b)| word | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(word >> (18 - 6 * i) & 0x3f) as usize]));
        }
    }
    out
}

#[test]
fn the_test_encoder_agrees_with_a_known_token() {
    assert_eq!(
        base64_url(b"v1:42:7"),
        PageToken { key: 42, id: 7 }.encode()
    );
    assert_eq!(base64_url(b""), "");
    assert_eq!(base64_url(b"f"), "Zg");
    assert_eq!(base64_url(b"fo"), "Zm8");
}
