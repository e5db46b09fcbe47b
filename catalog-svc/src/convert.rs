//! Rows to protobuf messages.
use learnhub_kit::time::to_timestamp;
use learnhub_proto::catalog::v1 as pb;

use crate::{
    domain::{CourseLevel, CourseStatus, CourseType},
    models::{category::CategoryCount, course::Course, exercise::Exercise, lesson::Lesson},
};

pub fn course(course: &Course) -> pb::Course {
    let row = &course.row;
    pb::Course {
        id: row.id,
        slug: row.slug.clone(),
        title: row.title.clone(),
        summary: row.summary.clone(),
        course_type: CourseType::from_db(&row.course_type)
            .map_or(pb::CourseType::Unspecified, CourseType::to_pb) as i32,
        category_slug: course.category_slug.clone(),
        category_name: course.category_name.clone(),
        level: CourseLevel::from_db(&row.level)
            .map_or(pb::CourseLevel::Unspecified, CourseLevel::to_pb) as i32,
        status: CourseStatus::from_db(&row.status)
            .map_or(pb::CourseStatus::Unspecified, CourseStatus::to_pb) as i32,
        is_featured: row.is_featured,
        created_at: Some(to_timestamp(row.created_at)),
        updated_at: Some(to_timestamp(row.updated_at)),
        published_at: row.published_at.map(to_timestamp),
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
