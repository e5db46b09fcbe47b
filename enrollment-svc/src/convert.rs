//! Rows to protobuf messages.
use std::collections::HashMap;

use learnhub_kit::time::to_timestamp;
use learnhub_proto::enrollment::v1 as pb;

use crate::{
    domain::{EnrollmentStatus, Role},
    models::{
        enrollment::Enrollment, exercise_submission::Submission, lesson_progress::LessonProgress,
        user::User,
    },
};

pub fn user(user: &User) -> pb::User {
    pb::User {
        id: user.id,
        email: user.email.clone(),
        display_name: user.display_name.clone(),
        role: Role::from_db(&user.role).map_or(pb::Role::Unspecified, Role::to_pb) as i32,
        created_at: Some(to_timestamp(user.created_at)),
    }
}

pub fn enrollment(enrollment: &Enrollment) -> pb::Enrollment {
    pb::Enrollment {
        id: enrollment.id,
        user_id: enrollment.user_id,
        course_id: enrollment.course_id,
        status: enrollment
            .status()
            .map_or(pb::EnrollmentStatus::Unspecified, EnrollmentStatus::to_pb)
            as i32,
        enrolled_at: Some(to_timestamp(enrollment.enrolled_at)),
        completed_at: enrollment.completed_at.map(to_timestamp),
    }
}

pub fn submission(submission: &Submission) -> pb::Submission {
    pb::Submission {
        id: submission.id,
        user_id: submission.user_id,
        exercise_id: submission.exercise_id,
        code: submission.code.clone(),
        passed: submission.passed,
        score: submission.score,
        submitted_at: Some(to_timestamp(submission.submitted_at)),
    }
}

/// Progress over the course's current lessons, in position order: a lesson with no row is not
/// completed; rows of lessons no longer in the course are left out of the counts.
pub fn progress(
    enrollment: &Enrollment,
    course_lessons: &[i64],
    rows: &[LessonProgress],
) -> pb::Progress {
    let by_lesson: HashMap<i64, &LessonProgress> = rows.iter().map(|r| (r.lesson_id, r)).collect();
    let lessons: Vec<pb::LessonProgress> = course_lessons
        .iter()
        .map(|lesson_id| {
            let row = by_lesson.get(lesson_id);
            pb::LessonProgress {
                lesson_id: *lesson_id,
                completed: row.is_some_and(|r| r.completed),
                completed_at: row.and_then(|r| r.completed_at).map(to_timestamp),
            }
        })
        .collect();
    let completed = lessons.iter().filter(|l| l.completed).count() as i64;
    let total = course_lessons.len() as i64;
    pb::Progress {
        enrollment: Some(self::enrollment(enrollment)),
        lessons,
        completed_lessons: completed,
        total_lessons: total,
        percent: percent(completed, total),
    }
}

/// 0..=100; a course without lessons is 0 % done.
pub fn percent(completed: i64, total: i64) -> f64 {
    if total <= 0 {
        0.0
    } else {
        (completed.min(total) as f64) * 100.0 / (total as f64)
    }
}
