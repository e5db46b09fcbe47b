//! Rows to protobuf messages.
use learnhub_kit::{PageToken, time::to_timestamp};
use learnhub_proto::catalog::v1 as pb;

use crate::{
    catalog::CoursePage,
    models::{
        category::{CategoryCount, Census},
        course::Course,
        exercise::Exercise,
        lesson::Lesson,
    },
};

pub fn course(course: &Course) -> pb::Course {
    let row = &course.row;
    pb::Course {
        id: row.id,
        slug: row.slug.clone(),
        title: row.title.clone(),
        summary: row.summary.clone(),
        course_type: row.course_type.to_pb().into(),
        category_slug: course.category_slug.clone(),
        category_name: course.category_name.clone(),
        level: row.level.to_pb().into(),
        status: row.status.to_pb().into(),
        is_featured: row.is_featured,
        created_at: Some(to_timestamp(row.created_at)),
        updated_at: Some(to_timestamp(row.updated_at)),
        published_at: row.published_at.map(to_timestamp),
    }
}

/// A page of courses; the token continues after its last course.
pub fn course_page(page: &CoursePage) -> pb::ListCoursesResponse {
    pb::ListCoursesResponse {
        courses: page.courses.iter().map(course).collect(),
        next_page_token: page
            .next_after
            .map(|id| PageToken::after_id(id).encode())
            .unwrap_or_default(),
    }
}

pub fn course_with_lessons(found: &Course, lessons: &[Lesson]) -> pb::GetCourseResponse {
    pb::GetCourseResponse {
        course: Some(course(found)),
        lessons: lessons.iter().map(lesson).collect(),
    }
}

/// The census part of the summary: counts per type and categories (no featured courses).
pub fn census(census: &Census) -> pb::GetCatalogSummaryResponse {
    pb::GetCatalogSummaryResponse {
        course_counts: census
            .per_type
            .iter()
            .map(|(course_type, count)| pb::CourseTypeCount {
                course_type: course_type.to_pb().into(),
                count: *count,
            })
            .collect(),
        categories: census.categories.iter().map(category).collect(),
        ..Default::default()
    }
}

pub fn category(category: &CategoryCount) -> pb::Category {
    pb::Category {
        id: category.id,
        slug: category.slug.clone(),
        name: category.name.clone(),
        course_count: category.course_count,
    }
}

pub fn lesson(lesson: &Lesson) -> pb::Lesson {
    pb::Lesson {
        id: lesson.id,
        course_id: lesson.course_id,
        position: lesson.position,
        title: lesson.title.clone(),
        body: lesson.body.clone(),
        created_at: Some(to_timestamp(lesson.created_at)),
        updated_at: Some(to_timestamp(lesson.updated_at)),
    }
}

pub fn exercise(exercise: &Exercise) -> pb::Exercise {
    pb::Exercise {
        id: exercise.id,
        lesson_id: exercise.lesson_id,
        title: exercise.title.clone(),
        prompt: exercise.prompt.clone(),
        starter_code: exercise.starter_code.clone(),
        created_at: Some(to_timestamp(exercise.created_at)),
        updated_at: Some(to_timestamp(exercise.updated_at)),
    }
}
