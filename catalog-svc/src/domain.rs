//! Catalog domain values, parsed from requests once so queries only see valid data.
use learnhub_proto::catalog::v1 as pb;

use crate::error::{Error, Result};

pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_SUMMARY_CHARS: usize = 2_000;
pub const MAX_BODY_CHARS: usize = 100_000;
pub const MAX_SLUG_CHARS: usize = 100;

learnhub_db::text_enum!(CourseType, CourseType, "course_type", {
    Python => "python", Python;
    Sql => "sql", Sql;
});

learnhub_db::text_enum!(CourseStatus, CourseStatus, "status", {
    Draft => "draft", Draft;
    Published => "published", Published;
    Archived => "archived", Archived;
});

learnhub_db::text_enum!(CourseLevel, CourseLevel, "level", {
    Beginner => "beginner", Beginner;
    Intermediate => "intermediate", Intermediate;
    Advanced => "advanced", Advanced;
});

/// A URL slug: 1..=100 characters of `[a-z0-9-]`, not starting or ending with `-`.
pub fn slug(field: &'static str, text: &str) -> Result<String> {
    if text.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if text.chars().count() > MAX_SLUG_CHARS {
        return Err(Error::invalid(
            field,
            format!("at most {MAX_SLUG_CHARS} characters"),
        ));
    }
    if !text
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(Error::invalid(field, "only a-z, 0-9 and - are allowed"));
    }
    if text.starts_with('-') || text.ends_with('-') {
        return Err(Error::invalid(field, "must not start or end with -"));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::invalid(
            field,
            "must contain a letter (all digits reads as an id)",
        ));
    }
    Ok(text.to_owned())
}

/// Trimmed, non-empty text of at most `max` characters.
pub fn title(field: &'static str, text: &str, max: usize) -> Result<String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if trimmed.chars().count() > max {
        return Err(Error::invalid(field, format!("at most {max} characters")));
    }
    Ok(trimmed.to_owned())
}

/// Text that may be empty, at most `max` characters.
pub fn text(field: &'static str, text: &str, max: usize) -> Result<String> {
    if text.chars().count() > max {
        return Err(Error::invalid(field, format!("at most {max} characters")));
    }
    Ok(text.to_owned())
}

/// A positive id.
pub fn id(field: &'static str, value: i64) -> Result<i64> {
    if value <= 0 {
        return Err(Error::invalid(field, "must be a positive id"));
    }
    Ok(value)
}

/// A course may be published from draft (or again when published) and archived from anything.
pub fn can_publish(from: CourseStatus) -> bool {
    matches!(from, CourseStatus::Draft | CourseStatus::Published)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(slug("slug", "intro-to-sql-2").is_ok());
        for bad in ["", "Intro", "a b", "a_b", "-a", "a-", "123", "a*"] {
            assert!(slug("slug", bad).is_err(), "{bad:?}");
        }
        assert!(slug("slug", &"a".repeat(101)).is_err());
    }

    #[test]
    fn enums_round_trip() {
        for t in CourseType::ALL {
            assert_eq!(CourseType::from_db(t.as_str()), Some(*t));
            assert_eq!(
                CourseType::from_pb(t.to_pb() as i32).ok().flatten(),
                Some(*t)
            );
        }
        assert!(CourseType::from_pb(99).is_err());
        assert_eq!(CourseType::from_pb(0).ok(), Some(None));
        assert!(CourseStatus::parse("deleted").is_err());
    }

    #[test]
    fn titles() {
        assert_eq!(
            title("title", "  Intro ", 10).ok().as_deref(),
            Some("Intro")
        );
        assert!(title("title", "   ", 10).is_err());
        assert!(title("title", "abcdefghijk", 10).is_err());
    }
}
