//! Rows and domain results to protobuf messages.
use std::collections::HashMap;

use learnhub_kit::{PageToken, time::to_timestamp};
use learnhub_proto::enrollment::v1 as pb;

use crate::{
    analytics::EnrollmentStats,
    learners::Page,
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
        role: user.role.to_pb() as i32,
        created_at: Some(to_timestamp(user.created_at)),
    }
}

pub fn enrollment(enrollment: &Enrollment) -> pb::Enrollment {
    pb::Enrollment {
        id: enrollment.id,
        user_id: enrollment.user_id,
        course_id: enrollment.course_id,
        status: enrollment.status.to_pb() as i32,
        enrolled_at: Some(to_timestamp(enrollment.enrolled_at)),
        completed_at: enrollment.completed_at.map(to_timestamp),
    }
}

pub fn enrollment_page(page: &Page<Enrollment>) -> pb::ListEnrollmentsResponse {
    pb::ListEnrollmentsResponse {
        enrollments: page.rows.iter().map(enrollment).collect(),
        next_page_token: next_token(page.next_before),
    }
}

/// Enrollments with their completed-lesson counts, for the catalog page.
pub fn enrollment_states(states: &[(Enrollment, i64)]) -> pb::BatchGetEnrollmentStateResponse {
    pb::BatchGetEnrollmentStateResponse {
        states: states
            .iter()
            .map(|(row, completed_lessons)| pb::EnrollmentState {
                enrollment: Some(enrollment(row)),
                completed_lessons: *completed_lessons,
            })
            .collect(),
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

pub fn submission_page(page: &Page<Submission>) -> pb::ListSubmissionsResponse {
    pb::ListSubmissionsResponse {
        submissions: page.rows.iter().map(submission).collect(),
        next_page_token: next_token(page.next_before),
    }
}

/// The token of the page after one that ended at `next_before` (empty: no next page).
fn next_token(next_before: Option<i64>) -> String {
    next_before
        .map(|id| PageToken::after_id(id).encode())
        .unwrap_or_default()
}

pub fn stats(stats: &EnrollmentStats) -> pb::EnrollmentStatsResponse {
    pb::EnrollmentStatsResponse {
        days: stats
            .days
            .iter()
            .map(|d| pb::DailyCount {
                day: d.day.format("%Y-%m-%d").to_string(),
                enrollments: d.enrollments,
                completions: d.completions,
            })
            .collect(),
        total_enrollments: stats.total_enrollments,
        total_completions: stats.total_completions,
        active_learners: stats.active_learners,
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
fn percent(completed: i64, total: i64) -> f64 {
    if total <= 0 {
        0.0
    } else {
        (completed.min(total) as f64) * 100.0 / (total as f64)
    }
}
