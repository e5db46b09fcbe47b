//! The input rules catalog-svc enforces and the gateway checks before calling it: slugs, titles,
//! free text and ids. One copy, so both refuse the same input with the same message.
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

/// Trimmed, non-empty text of at most `max` characters; gives the trimmed text.
pub fn title<'a>(field: &'static str, text: &'a str, max: usize) -> Result<&'a str, Invalid> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(Invalid::new(field, "must not be empty"));
    }
    if trimmed.chars().count() > max {
        return Err(Invalid::new(field, format!("at most {max} characters")));
    }
    Ok(trimmed)
}

/// Text that may be empty, at most `max` characters.
pub fn text<'a>(field: &'static str, text: &'a str, max: usize) -> Result<&'a str, Invalid> {
    if text.chars().count() > max {
        return Err(Invalid::new(field, format!("at most {max} characters")));
    }
    Ok(text)
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
    fn text_may_be_empty_but_not_long() {
        assert_eq!(text("summary", "", 5), Ok(""));
        assert!(text("summary", "abcdef", 5).is_err());
        assert_eq!(id("id", 7), Ok(7));
        assert!(id("id", -1).is_err());
    }
}
