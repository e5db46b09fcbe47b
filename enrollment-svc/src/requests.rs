//! Requests to domain values: each RPC's request becomes one validated input (`try_from`, or one
//! function where a setting takes part) before any query runs; a bad field is INVALID_ARGUMENT
//! naming it.
use learnhub_kit::{
    PageToken, page_token,
    validate::{self, Invalid},
};
use learnhub_proto::enrollment::v1 as pb;

use crate::{
    domain::{
        self, Email, EnrollmentKey, EnrollmentQuery, EnrollmentStateQuery, EnrollmentStatus,
        PageRequest, ProgressUpdate, Role, StatsRange, StatusChange, SubmissionDraft,
        SubmissionQuery, UserDraft,
    },
    error::{Error, Result},
};

const DEFAULT_PAGE_SIZE: i64 = 20;
const MAX_PAGE_SIZE: i64 = 100;
/// Most course ids one BatchGetEnrollmentState may name.
const MAX_BATCH_IDS: usize = 1_000;

impl PageRequest {
    fn parse(requested: i32, token: &str) -> Result<Self> {
        let size = page_token::page_size(requested, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
            .map_err(|reason| Error::invalid("page_size", reason))?;
        let before = PageToken::decode(token)
            .map_err(|err| Error::invalid("page_token", err.to_string()))?
            .map(|token| token.id);
        Ok(Self { size, before })
    }
}

/// A text check of `learnhub_kit::validate` (control and bidi-override characters) as our error.
fn characters(checked: std::result::Result<&str, Invalid>) -> Result<()> {
    checked
        .map(drop)
        .map_err(|invalid| Error::invalid(invalid.field, invalid.reason))
}

impl TryFrom<pb::CreateUserRequest> for UserDraft {
    type Error = Error;

    fn try_from(req: pb::CreateUserRequest) -> Result<Self> {
        characters(validate::single_line("display_name", &req.display_name))?;
        Ok(Self {
            email: Email::parse("email", &req.email)?,
            display_name: domain::name(
                "display_name",
                &req.display_name,
                domain::MAX_DISPLAY_NAME_CHARS,
            )?,
            role: Role::from_pb(req.role)?.unwrap_or(Role::Learner),
        })
    }
}

impl TryFrom<pb::EnrollRequest> for EnrollmentKey {
    type Error = Error;

    fn try_from(req: pb::EnrollRequest) -> Result<Self> {
        Ok(Self {
            user_id: domain::id("user_id", req.user_id)?,
            course_id: domain::id("course_id", req.course_id)?,
        })
    }
}

impl TryFrom<pb::ListEnrollmentsRequest> for EnrollmentQuery {
    type Error = Error;

    fn try_from(req: pb::ListEnrollmentsRequest) -> Result<Self> {
        Ok(Self {
            user_id: domain::id("user_id", req.user_id)?,
            status: EnrollmentStatus::from_pb(req.status)?,
            page: PageRequest::parse(req.page_size, &req.page_token)?,
        })
    }
}

impl TryFrom<pb::BatchGetEnrollmentStateRequest> for EnrollmentStateQuery {
    type Error = Error;

    fn try_from(req: pb::BatchGetEnrollmentStateRequest) -> Result<Self> {
        let user_id = domain::id("user_id", req.user_id)?;
        if req.course_ids.len() > MAX_BATCH_IDS {
            return Err(Error::invalid(
                "course_ids",
                format!("at most {MAX_BATCH_IDS} ids"),
            ));
        }
        for id in &req.course_ids {
            domain::id("course_ids", *id)?;
        }
        Ok(Self {
            user_id,
            course_ids: req.course_ids,
        })
    }
}

impl TryFrom<pb::UpdateEnrollmentStatusRequest> for StatusChange {
    type Error = Error;

    fn try_from(req: pb::UpdateEnrollmentStatusRequest) -> Result<Self> {
        Ok(Self {
            id: domain::id("id", req.id)?,
            to: EnrollmentStatus::from_pb(req.status)?.ok_or_else(|| {
                Error::invalid("status", "required: active, completed or dropped")
            })?,
        })
    }
}

impl TryFrom<pb::RecordLessonProgressRequest> for ProgressUpdate {
    type Error = Error;

    fn try_from(req: pb::RecordLessonProgressRequest) -> Result<Self> {
        Ok(Self {
            enrollment_id: domain::id("enrollment_id", req.enrollment_id)?,
            lesson_id: domain::id("lesson_id", req.lesson_id)?,
            completed: req.completed,
        })
    }
}

/// SubmitExercise's request, with code of at most `max_code_bytes` (`--max-submission-bytes`).
pub fn submission_draft(
    req: pb::SubmitExerciseRequest,
    max_code_bytes: usize,
) -> Result<SubmissionDraft> {
    characters(validate::multi_line("code", &req.code))?;
    Ok(SubmissionDraft {
        user_id: domain::id("user_id", req.user_id)?,
        exercise_id: domain::id("exercise_id", req.exercise_id)?,
        code: domain::code(&req.code, max_code_bytes)?,
        passed: req.passed,
        score: domain::score(req.score)?,
    })
}

impl TryFrom<pb::ListSubmissionsRequest> for SubmissionQuery {
    type Error = Error;

    fn try_from(req: pb::ListSubmissionsRequest) -> Result<Self> {
        Ok(Self {
            user_id: domain::id("user_id", req.user_id)?,
            // 0 (unset) lists every exercise's submissions.
            exercise_id: match req.exercise_id {
                0 => None,
                id => Some(domain::id("exercise_id", id)?),
            },
            page: PageRequest::parse(req.page_size, &req.page_token)?,
        })
    }
}

impl TryFrom<pb::EnrollmentStatsRequest> for StatsRange {
    type Error = Error;

    fn try_from(req: pb::EnrollmentStatsRequest) -> Result<Self> {
        Self::parse(req.from.as_ref(), req.to.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal<T: std::fmt::Debug>(result: Result<T>) -> (&'static str, String) {
        match result {
            Err(Error::InvalidArgument { field, reason }) => (field, reason),
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    fn user(display_name: &str) -> pb::CreateUserRequest {
        pb::CreateUserRequest {
            email: "ada@example.com".into(),
            display_name: display_name.into(),
            ..Default::default()
        }
    }

    fn submission(code: &str) -> pb::SubmitExerciseRequest {
        pb::SubmitExerciseRequest {
            user_id: 1,
            exercise_id: 2,
            code: code.into(),
            passed: true,
            score: 50,
        }
    }

    #[test]
    fn names_refuse_control_and_bidi_override_characters() {
        assert!(UserDraft::try_from(user("Ada Lovelace")).is_ok());
        for bad in ["Ada\0", "Ada\nAdmin", "Ada\u{202E}nimda", "\u{2068}Ada"] {
            let (field, reason) = refusal(UserDraft::try_from(user(bad)));
            assert_eq!(field, "display_name", "{bad:?}");
            assert!(reason.starts_with("must not contain"), "{reason}");
        }
    }

    #[test]
    fn code_keeps_its_lines_but_refuses_nul_and_bidi_overrides() {
        let code = "def f():\r\n\treturn 1\n";
        assert_eq!(submission_draft(submission(code), 1024).unwrap().code, code);
        for bad in ["print(1)\0", "x = 1 \u{202E} # ", "if ok\u{2066}:"] {
            let (field, _) = refusal(submission_draft(submission(bad), 1024));
            assert_eq!(field, "code", "{bad:?}");
        }
    }
}
