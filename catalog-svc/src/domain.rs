//! Catalog domain values, parsed from requests once so queries only see valid data. The text
//! rules (slugs, titles, lengths, ids) are `learnhub_kit::validate`'s, which the gateway applies
//! too; here their refusals become INVALID_ARGUMENT.
use learnhub_kit::validate::{self, Invalid};
use learnhub_proto::catalog::v1 as pb;

use crate::error::{Error, Result};

pub use learnhub_kit::validate::{MAX_BODY_CHARS, MAX_SUMMARY_CHARS, MAX_TITLE_CHARS};

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

fn invalid(err: Invalid) -> Error {
    Error::invalid(err.field, err.reason)
}

/// A URL slug (see [`validate::slug`]).
pub fn slug(field: &'static str, text: &str) -> Result<String> {
    validate::slug(field, text)
        .map(str::to_owned)
        .map_err(invalid)
}

/// Trimmed, non-empty text of at most `max` characters.
pub fn title(field: &'static str, text: &str, max: usize) -> Result<String> {
    validate::title(field, text, max)
        .map(str::to_owned)
        .map_err(invalid)
}

/// Text that may be empty, at most `max` characters.
pub fn text(field: &'static str, text: &str, max: usize) -> Result<String> {
    validate::text(field, text, max)
        .map(str::to_owned)
        .map_err(invalid)
}

/// A positive id.
pub fn id(field: &'static str, value: i64) -> Result<i64> {
    validate::id(field, value).map_err(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_invalid_argument_naming_the_field() {
        assert_eq!(
            slug("slug", "intro-to-sql-2").ok().as_deref(),
            Some("intro-to-sql-2")
        );
        for bad in ["", "Intro", "a b", "a_b", "-a", "a-", "123", "a*"] {
            assert!(slug("slug", bad).is_err(), "{bad:?}");
        }
        assert!(slug("slug", &"a".repeat(101)).is_err());
        match slug("category", "-a") {
            Err(Error::InvalidArgument { field, reason }) => {
                assert_eq!(
                    (field, reason.as_str()),
                    ("category", "must not start or end with -")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            id("lesson_id", 0),
            Err(Error::InvalidArgument {
                field: "lesson_id",
                ..
            })
        ));
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
