//! The input rules the data services enforce and the gateway checks before calling them: slugs,
//! titles, free text, ids, and the characters text may hold. One copy, so every service refuses
//! the same input with the same message.
use std::fmt;

pub const MAX_SLUG_CHARS: usize = 100;
pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_SUMMARY_CHARS: usize = 2_000;
pub const MAX_BODY_CHARS: usize = 100_000;

/// A refused input: the field it came in and why. Shown as `field: reason`, the message of an
/// INVALID_ARGUMENT status or of a REST 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: &'static str,
    pub reason: String,
}

impl Invalid {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for Invalid {}

/// A URL slug: 1..=100 characters of `[a-z0-9-]`, not starting or ending with `-`, not all
/// digits (a path segment of digits is read as an id).
pub fn slug<'a>(field: &'static str, text: &'a str) -> Result<&'a str, Invalid> {
    if text.is_empty() {
        return Err(Invalid::new(field, "must not be empty"));
    }
    if text.chars().count() > MAX_SLUG_CHARS {
        return Err(Invalid::new(
            field,
            format!("at most {MAX_SLUG_CHARS} characters"),
        ));
    }
    if !text
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(Invalid::new(field, "only a-z, 0-9 and - are allowed"));
    }
    if text.starts_with('-') || text.ends_with('-') {
        return Err(Invalid::new(field, "must not start or end with -"));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Invalid::new(
            field,
            "must contain a letter (all digits reads as an id)",
        ));
    }
    Ok(text)
}

/// A character text never holds, whatever the field: NUL, DEL and the other C0/C1 controls
/// (multi-line text keeps tab, line feed and carriage return), and the bidirectional embeddings,
/// overrides and isolates (U+202A–U+202E, U+2066–U+2069) that make text, and code above all,
/// display in another order than it reads ("Trojan Source", CVE-2021-42574).
fn forbidden(c: char, multi_line: bool) -> bool {
    let line_control = matches!(c, '\t' | '\n' | '\r');
    (c.is_control() && !(multi_line && line_control))
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn refuse_forbidden<'a>(
    field: &'static str,
    text: &'a str,
    multi_line: bool,
) -> Result<&'a str, Invalid> {
    match text.chars().position(|c| forbidden(c, multi_line)) {
        None => Ok(text),
        Some(at) => {
            let c = text.chars().nth(at).unwrap_or_default();
            let kind = if c.is_control() {
                "a control character"
            } else {
                "a bidirectional override"
            };
            Err(Invalid::new(
                field,
                format!(
                    "must not contain {kind} (U+{:04X} at character {at})",
                    u32::from(c)
                ),
            ))
        }
    }
}

/// One line of text (a title, a name): no control character at all, no bidi override.
pub fn single_line<'a>(field: &'static str, text: &'a str) -> Result<&'a str, Invalid> {
    refuse_forbidden(field, text, false)
}

/// Text of several lines (a summary, a lesson body, code): tab, line feed and carriage return
/// are allowed; every other control character and the bidi overrides are not.
pub fn multi_line<'a>(field: &'static str, text: &'a str) -> Result<&'a str, Invalid> {
    refuse_forbidden(field, text, true)
}

/// Trimmed, non-empty, one-line text of at most `max` characters; gives the trimmed text.
pub fn title<'a>(field: &'static str, text: &'a str, max: usize) -> Result<&'a str, Invalid> {
    single_line(field, text)?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(Invalid::new(field, "must not be empty"));
    }
    if trimmed.chars().count() > max {
        return Err(Invalid::new(field, format!("at most {max} characters")));
    }
    Ok(trimmed)
}

/// Multi-line text that may be empty, at most `max` characters.
pub fn text<'a>(field: &'static str, text: &'a str, max: usize) -> Result<&'a str, Invalid> {
    if text.chars().count() > max {
        return Err(Invalid::new(field, format!("at most {max} characters")));
    }
    multi_line(field, text)
}

/// A positive id.
pub fn id(field: &'static str, value: i64) -> Result<i64, Invalid> {
    if value <= 0 {
        return Err(Invalid::new(field, "must be a positive id"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slug("slug", "intro-to-sql-2"), Ok("intro-to-sql-2"));
        for bad in [
            "",
            "Intro",
            "a b",
            "a_b",
            "-a",
            "a-",
            "123",
            "a*",
            "ünïcode",
        ] {
            assert!(slug("slug", bad).is_err(), "{bad:?}");
        }
        assert!(slug("slug", &"a".repeat(MAX_SLUG_CHARS)).is_ok());
        assert!(slug("slug", &"a".repeat(MAX_SLUG_CHARS + 1)).is_err());
    }

    #[test]
    fn errors_name_the_field() {
        let err = slug("category", "-a").unwrap_err();
        assert_eq!(err.to_string(), "category: must not start or end with -");
        assert_eq!(
            id("lesson_id", 0).unwrap_err().to_string(),
            "lesson_id: must be a positive id"
        );
    }

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(title("title", "  Intro ", 10), Ok("Intro"));
        assert!(title("title", "   ", 10).is_err());
        assert!(title("title", "abcdefghijk", 10).is_err());
        // Characters, not bytes: ten two-byte characters fit in ten.
        assert!(title("title", &"é".repeat(10), 10).is_ok());
    }

    #[test]
    fn titles_refuse_every_control_character_and_bidi_override() {
        for bad in [
            "a\0b",
            "a\nb",
            "a\tb",
            "a\rb",
            "\u{7f}",
            "\u{85}",
            "\u{9b}",
            "a\u{202E}b",
            "\u{202A}",
            "\u{2066}x",
            "x\u{2069}",
        ] {
            let err = title("title", bad, 100).unwrap_err();
            assert_eq!(err.field, "title", "{bad:?}");
            assert!(err.reason.starts_with("must not contain"), "{bad:?}: {err}");
        }
        // Letters of right-to-left scripts and the plain direction marks are text, not overrides.
        for good in ["שלום", "مرحبا", "a\u{200F}b", "Ünïcödé ✓"] {
            assert_eq!(title("title", good, 100), Ok(good));
        }
        assert_eq!(
            title("name", "Bob\u{202E}cod.exe", 100)
                .unwrap_err()
                .to_string(),
            "name: must not contain a bidirectional override (U+202E at character 3)"
        );
    }

    #[test]
    fn multi_line_text_keeps_line_controls_only() {
        let code = "def f():\r\n\treturn 1\n";
        assert_eq!(text("body", code, 100), Ok(code));
        assert_eq!(multi_line("code", code), Ok(code));
        for bad in [
            "\0",
            "a\u{1b}[31m",
            "\u{8}",
            "\u{7f}",
            "if x\u{2067}:",
            "\u{202D}",
        ] {
            let err = text("summary", bad, 100).unwrap_err();
            assert_eq!(err.field, "summary", "{bad:?}");
        }
        assert_eq!(
            multi_line("code", "x = 1\0").unwrap_err().to_string(),
            "code: must not contain a control character (U+0000 at character 5)"
        );
        assert!(single_line("name", "a\tb").is_err());
    }

    #[test]
    fn text_may_be_empty_but_not_long() {
        assert_eq!(text("summary", "", 5), Ok(""));
        assert!(text("summary", "abcdef", 5).is_err());
        assert_eq!(id("id", 7), Ok(7));
        assert!(id("id", -1).is_err());
    }
}
