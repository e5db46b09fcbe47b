//! Requests to domain input: every `learnhub.catalog.v1` request is checked here, once, and
//! comes out as the value its catalog operation takes; a refusal is INVALID_ARGUMENT naming the
//! field.
use learnhub_kit::{PageToken, page_token};
use learnhub_proto::catalog::v1 as pb;

use crate::{
    catalog::{
        CategoryDraft, CourseDraft, CourseKey, CourseQuery, CourseUpdate, ExerciseDraft,
        ExerciseUpdate, LessonDraft, LessonUpdate,
    },
    domain::{
        self, CourseLevel, CourseStatus, CourseType, MAX_BODY_CHARS, MAX_SUMMARY_CHARS,
        MAX_TITLE_CHARS,
    },
    error::{Error, Result},
    models::course::CourseFilter,
};

pub const DEFAULT_PAGE_SIZE: i64 = 20;
pub const MAX_PAGE_SIZE: i64 = 100;
pub const MAX_BATCH_IDS: usize = 1_000;
const DEFAULT_FEATURED: i64 = 6;
const MAX_FEATURED: i64 = 50;

/// Batch ids: at most [`MAX_BATCH_IDS`], each positive.
pub fn batch_ids(field: &'static str, ids: Vec<i64>) -> Result<Vec<i64>> {
    if ids.len() > MAX_BATCH_IDS {
        return Err(Error::invalid(
            field,
            format!("at most {MAX_BATCH_IDS} ids"),
        ));
    }
    ids.iter()
        .try_for_each(|id| domain::id(field, *id).map(drop))?;
    Ok(ids)
}

/// How many featured courses of each type the summary shows (0: the default).
pub fn featured_limit(request: &pb::GetCatalogSummaryRequest) -> Result<i64> {
    page_token::page_size(request.featured_limit, DEFAULT_FEATURED, MAX_FEATURED).map_err(
        |reason| {
            Error::invalid(
                "featured_limit",
                reason.replace("page_size", "featured_limit"),
            )
        },
    )
}

fn optional_category(text: &str) -> Result<Option<String>> {
    if text.is_empty() {
        Ok(None)
    } else {
        domain::slug("category", text).map(Some)
    }
}

fn position(value: Option<i32>) -> Result<Option<i32>> {
    match value {
        Some(p) if p <= 0 => Err(Error::invalid("position", "must be 1 or more")),
        other => Ok(other),
    }
}

fn optional<T>(value: Option<String>, parse: impl FnOnce(&str) -> Result<T>) -> Result<Option<T>> {
    value.as_deref().map(parse).transpose()
}

impl TryFrom<pb::ListCoursesRequest> for CourseQuery {
    type Error = Error;

    fn try_from(request: pb::ListCoursesRequest) -> Result<Self> {
        let filter = CourseFilter {
            course_type: CourseType::from_pb(request.course_type)?,
            category: optional_category(&request.category)?,
            status: CourseStatus::from_pb(request.status)?,
            featured: request.featured,
            level: None,
        };
        let page_size = page_token::page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
            .map_err(|reason| Error::invalid("page_size", reason))?;
        let after = PageToken::decode(&request.page_token)
            .map_err(|err| Error::invalid("page_token", err.to_string()))?
            .map(|token| token.id);
        Ok(Self {
            filter,
            after,
            page_size,
        })
    }
}

impl TryFrom<pb::GetCourseRequest> for CourseKey {
    type Error = Error;

    fn try_from(request: pb::GetCourseRequest) -> Result<Self> {
        match request.key {
            Some(pb::get_course_request::Key::Id(id)) => domain::id("id", id).map(Self::Id),
            Some(pb::get_course_request::Key::Slug(slug)) => {
                domain::slug("slug", &slug).map(Self::Slug)
            }
            None => Err(Error::invalid("key", "set id or slug")),
        }
    }
}

impl TryFrom<pb::CreateCategoryRequest> for CategoryDraft {
    type Error = Error;

    fn try_from(request: pb::CreateCategoryRequest) -> Result<Self> {
        Ok(Self {
            slug: domain::slug("slug", &request.slug)?,
            name: domain::title("name", &request.name, MAX_TITLE_CHARS)?,
        })
    }
}

impl TryFrom<pb::CreateCourseRequest> for CourseDraft {
    type Error = Error;

    fn try_from(request: pb::CreateCourseRequest) -> Result<Self> {
        Ok(Self {
            slug: domain::slug("slug", &request.slug)?,
            title: domain::title("title", &request.title, MAX_TITLE_CHARS)?,
            summary: domain::text("summary", &request.summary, MAX_SUMMARY_CHARS)?,
            course_type: CourseType::from_pb(request.course_type)?
                .ok_or_else(|| Error::invalid("course_type", "required: python or sql"))?,
            category: domain::slug("category", &request.category)?,
            level: CourseLevel::from_pb(request.level)?.unwrap_or(CourseLevel::Beginner),
            is_featured: request.is_featured,
        })
    }
}

impl TryFrom<pb::UpdateCourseRequest> for CourseUpdate {
    type Error = Error;

    fn try_from(request: pb::UpdateCourseRequest) -> Result<Self> {
        Ok(Self {
            id: domain::id("id", request.id)?,
            slug: optional(request.slug, |s| domain::slug("slug", s))?,
            title: optional(request.title, |t| {
                domain::title("title", t, MAX_TITLE_CHARS)
            })?,
            summary: optional(request.summary, |s| {
                domain::text("summary", s, MAX_SUMMARY_CHARS)
            })?,
            course_type: CourseType::from_pb(request.course_type)?,
            category: optional(request.category, |c| domain::slug("category", c))?,
            level: CourseLevel::from_pb(request.level)?,
            is_featured: request.is_featured,
        })
    }
}

impl TryFrom<pb::CreateLessonRequest> for LessonDraft {
    type Error = Error;

    fn try_from(request: pb::CreateLessonRequest) -> Result<Self> {
        Ok(Self {
            course_id: domain::id("course_id", request.course_id)?,
            title: domain::title("title", &request.title, MAX_TITLE_CHARS)?,
            body: domain::text("body", &request.body, MAX_BODY_CHARS)?,
            position: position(request.position)?,
        })
    }
}

impl TryFrom<pb::UpdateLessonRequest> for LessonUpdate {
    type Error = Error;

    fn try_from(request: pb::UpdateLessonRequest) -> Result<Self> {
        Ok(Self {
            id: domain::id("id", request.id)?,
            title: optional(request.title, |t| {
                domain::title("title", t, MAX_TITLE_CHARS)
            })?,
            body: optional(request.body, |b| domain::text("body", b, MAX_BODY_CHARS))?,
            position: position(request.position)?,
        })
    }
}

impl TryFrom<pb::CreateExerciseRequest> for ExerciseDraft {
    type Error = Error;

    fn try_from(request: pb::CreateExerciseRequest) -> Result<Self> {
        Ok(Self {
            lesson_id: domain::id("lesson_id", request.lesson_id)?,
            title: domain::title("title", &request.title, MAX_TITLE_CHARS)?,
            prompt: domain::text("prompt", &request.prompt, MAX_BODY_CHARS)?,
            starter_code: domain::text("starter_code", &request.starter_code, MAX_BODY_CHARS)?,
        })
    }
}

impl TryFrom<pb::UpdateExerciseRequest> for ExerciseUpdate {
    type Error = Error;

    fn try_from(request: pb::UpdateExerciseRequest) -> Result<Self> {
        Ok(Self {
            id: domain::id("id", request.id)?,
            title: optional(request.title, |t| {
                domain::title("title", t, MAX_TITLE_CHARS)
            })?,
            prompt: optional(request.prompt, |p| {
                domain::text("prompt", p, MAX_BODY_CHARS)
            })?,
            starter_code: optional(request.starter_code, |c| {
                domain::text("starter_code", c, MAX_BODY_CHARS)
            })?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of<T: std::fmt::Debug>(result: Result<T>) -> &'static str {
        match result {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_create_course_request_becomes_a_draft() {
        let draft = CourseDraft::try_from(pb::CreateCourseRequest {
            slug: "sql-joins".into(),
            title: "  SQL joins ".into(),
            course_type: pb::CourseType::Sql.into(),
            category: "sql-fundamentals".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(draft.title, "SQL joins");
        assert_eq!(draft.course_type, CourseType::Sql);
        assert_eq!(draft.level, CourseLevel::Beginner, "the default level");
    }

    #[test]
    fn refusals_name_the_field() {
        assert_eq!(
            field_of(CourseKey::try_from(pb::GetCourseRequest { key: None })),
            "key"
        );
        assert_eq!(field_of(batch_ids("ids", vec![1, 0])), "ids");
        assert_eq!(field_of(batch_ids("ids", (1..=1_001).collect())), "ids");
        assert_eq!(
            field_of(CourseUpdate::try_from(pb::UpdateCourseRequest {
                id: 3,
                category: Some("-a".into()),
                ..Default::default()
            })),
            "category"
        );
        assert_eq!(
            field_of(LessonDraft::try_from(pb::CreateLessonRequest {
                course_id: 1,
                title: "t".into(),
                position: Some(0),
                ..Default::default()
            })),
            "position"
        );
        assert_eq!(
            field_of(featured_limit(&pb::GetCatalogSummaryRequest {
                featured_limit: 51
            })),
            "featured_limit"
        );
    }

    #[test]
    fn text_fields_refuse_control_and_bidi_override_characters() {
        let course = |title: &str, summary: &str| {
            CourseDraft::try_from(pb::CreateCourseRequest {
                slug: "sql-joins".into(),
                title: title.into(),
                summary: summary.into(),
                course_type: pb::CourseType::Sql.into(),
                category: "sql".into(),
                ..Default::default()
            })
        };
        assert!(course("SQL joins", "Inner,\nouter\tand lateral").is_ok());
        assert_eq!(field_of(course("SQL\u{202E}joins", "")), "title");
        assert_eq!(field_of(course("SQL\njoins", "")), "title");
        assert_eq!(field_of(course("SQL", "nul\0")), "summary");
        assert_eq!(field_of(course("SQL", "\u{2067}hidden")), "summary");
        assert_eq!(
            field_of(CategoryDraft::try_from(pb::CreateCategoryRequest {
                slug: "sql".into(),
                name: "S\u{1b}[31mQL".into(),
            })),
            "name"
        );
        assert_eq!(
            field_of(LessonUpdate::try_from(pb::UpdateLessonRequest {
                id: 1,
                body: Some("ok\n\u{0}".into()),
                ..Default::default()
            })),
            "body"
        );
        assert_eq!(
            field_of(ExerciseDraft::try_from(pb::CreateExerciseRequest {
                lesson_id: 1,
                title: "t".into(),
                starter_code: "x = 1\u{202D}".into(),
                ..Default::default()
            })),
            "starter_code"
        );
        let lesson = LessonDraft::try_from(pb::CreateLessonRequest {
            course_id: 1,
            title: "t".into(),
            body: "line one\r\n\tline two".into(),
            ..Default::default()
        });
        assert!(lesson.is_ok());
    }

    #[test]
    fn a_first_page_has_no_cursor() {
        let query = CourseQuery::try_from(pb::ListCoursesRequest::default()).unwrap();
        assert_eq!(query.after, None);
        assert_eq!(query.page_size, DEFAULT_PAGE_SIZE);
        assert_eq!(query.filter, CourseFilter::default());
    }
}
