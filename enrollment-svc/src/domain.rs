//! Enrollment domain values, parsed from requests once so queries only see valid data.
use chrono::{Duration, NaiveDateTime};
use learnhub_kit::time;
use learnhub_proto::enrollment::v1 as pb;

use crate::error::{Error, Result};

pub const MAX_EMAIL_CHARS: usize = 254;
pub const MAX_EMAIL_LOCAL_CHARS: usize = 64;
pub const MAX_DISPLAY_NAME_CHARS: usize = 100;
/// The longest range EnrollmentStats answers (a leap year).
pub const MAX_STATS_DAYS: i64 = 366;

learnhub_db::text_enum!(Role, Role, "role", {
    Learner => "learner", Learner;
    Admin => "admin", Admin;
});

learnhub_db::text_enum!(EnrollmentStatus, EnrollmentStatus, "status", {
    Active => "active", Active;
    Completed => "completed", Completed;
    Dropped => "dropped", Dropped;
});

impl EnrollmentStatus {
    /// The statuses an enrollment may move to `self` from: active → completed | dropped,
    /// dropped → active. Nothing else (in particular nothing leaves completed).
    pub fn allowed_from(self) -> &'static [Self] {
        match self {
            Self::Completed | Self::Dropped => &[Self::Active],
            Self::Active => &[Self::Dropped],
        }
    }
}

/// An email address as the learner typed it (trimmed) and its lowercase form, which is what
/// uniqueness and lookups use: `Ada@Example.com` and `ada@example.com` are one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    display: String,
    normalized: String,
}

impl Email {
    /// Checks the usual `local@domain.tld` syntax (ASCII; no quoted local parts, no IP literals).
    pub fn parse(field: &'static str, text: &str) -> Result<Self> {
        let text = text.trim();
        let bad = |reason: &str| Err(Error::invalid(field, reason.to_owned()));
        if text.is_empty() {
            return bad("must not be empty");
        }
        if text.chars().count() > MAX_EMAIL_CHARS {
            return bad("at most 254 characters");
        }
        let Some((local, domain)) = text.split_once('@') else {
            return bad("is not an email address (no @)");
        };
        if domain.contains('@') {
            return bad("is not an email address (more than one @)");
        }
        if local.is_empty() || local.len() > MAX_EMAIL_LOCAL_CHARS {
            return bad("the part before @ must have 1 to 64 characters");
        }
        let local_ok = local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b));
        if !local_ok || local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return bad("the part before @ has characters an address cannot have");
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 {
            return bad("the domain needs a dot (example.com)");
        }
        let label_ok = |label: &&str| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        if !labels.iter().all(label_ok) {
            return bad("the domain is not a valid host name");
        }
        if labels
            .last()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return bad("the domain is not a valid host name");
        }
        Ok(Self {
            display: text.to_owned(),
            normalized: text.to_ascii_lowercase(),
        })
    }

    pub fn display(&self) -> &str {
        &self.display
    }

    pub fn normalized(&self) -> &str {
        &self.normalized
    }
}

/// Trimmed, non-empty text of at most `max` characters.
pub fn name(field: &'static str, text: &str, max: usize) -> Result<String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if trimmed.chars().count() > max {
        return Err(Error::invalid(field, format!("at most {max} characters")));
    }
    Ok(trimmed.to_owned())
}

/// A positive id.
pub fn id(field: &'static str, value: i64) -> Result<i64> {
    if value <= 0 {
        return Err(Error::invalid(field, "must be a positive id"));
    }
    Ok(value)
}

/// A submission's score: 0..=100.
pub fn score(value: i32) -> Result<i32> {
    if !(0..=100).contains(&value) {
        return Err(Error::invalid(
            "score",
            format!("must be between 0 and 100, got {value}"),
        ));
    }
    Ok(value)
}

/// Submitted code: not empty, at most `max_bytes` bytes of UTF-8.
pub fn code(text: &str, max_bytes: usize) -> Result<String> {
    if text.trim().is_empty() {
        return Err(Error::invalid("code", "must not be empty"));
    }
    if text.len() > max_bytes {
        return Err(Error::invalid(
            "code",
            format!(
                "{} bytes is over the limit of {max_bytes} bytes",
                text.len()
            ),
        ));
    }
    Ok(text.to_owned())
}

/// One page of a newest-first listing: at most `size` rows with ids below `before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub size: i64,
    pub before: Option<i64>,
}

/// CreateUser: who to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDraft {
    pub email: Email,
    pub display_name: String,
    pub role: Role,
}

/// Enroll: a learner and a course (an enrollment's natural key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnrollmentKey {
    pub user_id: i64,
    pub course_id: i64,
}

/// ListEnrollments: one page of a learner's enrollments, of one status or all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnrollmentQuery {
    pub user_id: i64,
    pub status: Option<EnrollmentStatus>,
    pub page: PageRequest,
}

/// BatchGetEnrollmentState: a learner's state in each of some courses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentStateQuery {
    pub user_id: i64,
    pub course_ids: Vec<i64>,
}

/// UpdateEnrollmentStatus: move enrollment `id` to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusChange {
    pub id: i64,
    pub to: EnrollmentStatus,
}

/// RecordLessonProgress: one lesson of an enrollment, completed or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressUpdate {
    pub enrollment_id: i64,
    pub lesson_id: i64,
    pub completed: bool,
}

/// SubmitExercise: the fields of a new submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmissionDraft {
    pub user_id: i64,
    pub exercise_id: i64,
    pub code: String,
    pub passed: bool,
    pub score: i32,
}

/// ListSubmissions: one page of a learner's submissions, for one exercise or all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubmissionQuery {
    pub user_id: i64,
    pub exercise_id: Option<i64>,
    pub page: PageRequest,
}

/// A half-open UTC range `[from, to)` of at most [`MAX_STATS_DAYS`] days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsRange {
    pub from: NaiveDateTime,
    pub to: NaiveDateTime,
}

impl StatsRange {
    pub fn parse(
        from: Option<&prost_types::Timestamp>,
        to: Option<&prost_types::Timestamp>,
    ) -> Result<Self> {
        let at = |field: &'static str, ts: Option<&prost_types::Timestamp>| {
            let ts = ts.ok_or_else(|| Error::invalid(field, "required"))?;
            time::from_timestamp(ts).ok_or_else(|| Error::invalid(field, "not a valid timestamp"))
        };
        let from = at("from", from)?;
        let to = at("to", to)?;
        if to <= from {
            return Err(Error::invalid("to", "must be after from"));
        }
        if to - from > Duration::days(MAX_STATS_DAYS) {
            return Err(Error::invalid(
                "to",
                format!("the range from..to is longer than {MAX_STATS_DAYS} days"),
            ));
        }
        Ok(Self { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        let email = Email::parse("email", "  Ada.Lovelace+x@Example.COM ").unwrap();
        assert_eq!(email.display(), "Ada.Lovelace+x@Example.COM");
        assert_eq!(email.normalized(), "ada.lovelace+x@example.com");
        for good in ["a@b.co", "x_y-z@sub.domain.org", "o'neil@example.ie"] {
            assert!(Email::parse("email", good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "plain",
            "@example.com",
            "ada@",
            "ada@example",
            "ada@@example.com",
            "a@b@example.com",
            "ada lovelace@example.com",
            ".ada@example.com",
            "ada.@example.com",
            "a..b@example.com",
            "ada@-example.com",
            "ada@example-.com",
            "ada@exa_mple.com",
            "ada@example..com",
            "ada@1.2.3.4",
            "adá@example.com",
        ] {
            assert!(Email::parse("email", bad).is_err(), "{bad:?}");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(Email::parse("email", &long_local).is_err());
    }

    #[test]
    fn transitions() {
        use EnrollmentStatus::*;
        assert_eq!(Completed.allowed_from(), &[Active]);
        assert_eq!(Dropped.allowed_from(), &[Active]);
        assert_eq!(Active.allowed_from(), &[Dropped]);
    }

    #[test]
    fn enums_round_trip() {
        for s in EnrollmentStatus::ALL {
            assert_eq!(EnrollmentStatus::from_db(s.as_str()), Some(*s));
            assert_eq!(
                EnrollmentStatus::from_pb(s.to_pb() as i32).ok().flatten(),
                Some(*s)
            );
        }
        assert!(Role::from_pb(7).is_err());
        assert_eq!(Role::from_pb(0).ok(), Some(None));
    }

    #[test]
    fn stats_ranges() {
        let ts = |seconds| prost_types::Timestamp { seconds, nanos: 0 };
        let day = 86_400;
        assert!(StatsRange::parse(Some(&ts(0)), Some(&ts(366 * day))).is_ok());
        assert!(StatsRange::parse(Some(&ts(0)), Some(&ts(366 * day + 1))).is_err());
        assert!(StatsRange::parse(Some(&ts(day)), Some(&ts(0))).is_err());
        assert!(StatsRange::parse(Some(&ts(day)), Some(&ts(day))).is_err());
        assert!(StatsRange::parse(None, Some(&ts(day))).is_err());
    }

    #[test]
    fn code_limits() {
        assert!(code("print(1)", 8).is_ok());
        assert!(code("print(1)", 7).is_err());
        assert!(code("   ", 100).is_err());
        assert!(score(101).is_err());
        assert!(score(-1).is_err());
    }
}
