//! EnrollmentStats from the daily rollup equals the raw query (`analytics::enrollment_stats_raw`)
//! on randomized data written behind the service's back: backdated model inserts, completions set,
//! moved and cleared, lessons uncompleted, deletes cascading from enrollments and users, and new
//! rows on days whose bitmaps are already stored; for random ranges, midnight-aligned or not.
use chrono::{Duration, NaiveDate, NaiveDateTime};
use diesel::{ExpressionMethods, QueryDsl};
use diesel_async::RunQueryDsl;
use enrollment_svc::{
    analytics::{enrollment_stats, enrollment_stats_raw},
    domain::{EnrollmentStatus, Role, StatsRange},
    models::{
        enrollment::{Enrollment, NewEnrollment},
        exercise_submission::{NewSubmission, Submission},
        lesson_progress::{LessonProgress, NewLessonProgress},
        user::{NewUser, User},
    },
    schema::{enrollments, exercise_submissions, lesson_progress, users},
};
use learnhub_db::{Backend, DbConn, SplitMix64, db_run};
use learnhub_kit::time;
use learnhub_proto::enrollment::v1 as pb;

use crate::{helpers::spawn_app, on_both_backends};

on_both_backends!(rollup_equals_the_raw_query_on_random_data);

const DAYS: u64 = 60;
const RANGES: usize = 40;

fn start() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
}

/// A moment in the data's 60 days, to the microsecond (as the service writes them).
fn moment(rng: &mut SplitMix64) -> NaiveDateTime {
    start() + Duration::microseconds(rng.below(DAYS * 86_400_000_000) as i64)
}

/// Half the ranges start and end at midnights; the others anywhere, from a second to 64 days.
fn random_range(rng: &mut SplitMix64) -> StatsRange {
    let from = start() - Duration::days(2) + Duration::seconds(rng.below(64 * 86_400) as i64);
    let length = Duration::seconds(1 + rng.below(64 * 86_400) as i64);
    if rng.below(2) == 0 {
        let from = from.date().and_hms_opt(0, 0, 0).unwrap();
        let days = 1 + length.num_days();
        StatsRange {
            from,
            to: from + Duration::days(days),
        }
    } else {
        StatsRange {
            from,
            to: from + length,
        }
    }
}

/// Each range twice: the first call builds and stores the missing bitmaps, the second reads them.
async fn assert_rollup_equals_raw(conn: &mut DbConn, rng: &mut SplitMix64, phase: &str) {
    for _ in 0..RANGES {
        let range = random_range(rng);
        let raw = enrollment_stats_raw(conn, range).await.unwrap();
        for call in ["first", "second"] {
            let rollup = enrollment_stats(conn, range).await.unwrap();
            assert_eq!(
                rollup, raw,
                "{phase}, {call} call, range {} .. {}",
                range.from, range.to
            );
        }
    }
}

fn enrollment(user_id: i64, course_id: i64, rng: &mut SplitMix64) -> NewEnrollment {
    let enrolled_at = moment(rng);
    let completed_at = (rng.below(3) == 0)
        .then(|| enrolled_at + Duration::minutes(1 + rng.below(10 * 24 * 60) as i64));
    NewEnrollment {
        user_id,
        course_id,
        status: if completed_at.is_some() {
            EnrollmentStatus::Completed
        } else {
            EnrollmentStatus::Active
        },
        enrolled_at,
        completed_at,
        updated_at: completed_at.unwrap_or(enrolled_at),
    }
}

fn progress(enrollment_id: i64, lesson_id: i64, rng: &mut SplitMix64) -> NewLessonProgress {
    let completed_at = (rng.below(4) != 0).then(|| moment(rng));
    NewLessonProgress {
        enrollment_id,
        lesson_id,
        completed: completed_at.is_some(),
        completed_at,
        updated_at: completed_at.unwrap_or_else(start),
    }
}

fn submission(user_id: i64, rng: &mut SplitMix64) -> NewSubmission {
    NewSubmission {
        user_id,
        exercise_id: 1 + rng.below(20) as i64,
        code: "print(1)".into(),
        passed: true,
        score: 100,
        submitted_at: moment(rng),
    }
}

/// Rows for `users`: 1..=5 enrollments each (courses from `first_course` on), some lessons, some
/// submissions.
async fn insert_activity(
    conn: &mut DbConn,
    rng: &mut SplitMix64,
    user_ids: &[i64],
    first_course: i64,
) {
    let mut rows = Vec::new();
    for &user_id in user_ids {
        for course in 0..1 + rng.below(5) as i64 {
            rows.push(enrollment(user_id, first_course + course, rng));
        }
    }
    Enrollment::insert_many(conn, &rows).await.unwrap();
    let keys = Enrollment::keys_for_users(conn, user_ids).await.unwrap();
    let mut lessons = Vec::new();
    for (enrollment_id, _, course_id) in keys {
        if course_id < first_course {
            continue;
        }
        for lesson_id in 0..rng.below(4) as i64 {
            lessons.push(progress(enrollment_id, lesson_id, rng));
        }
    }
    LessonProgress::insert_many(conn, &lessons).await.unwrap();
    let submissions: Vec<_> = (0..user_ids.len() * 4)
        .map(|_| submission(user_ids[rng.below(user_ids.len() as u64) as usize], rng))
        .collect();
    Submission::insert_many(conn, &submissions).await.unwrap();
}

async fn ids_of(conn: &mut DbConn, table: &str) -> Vec<i64> {
    match table {
        "enrollments" => {
            db_run!(conn => enrollments::table.select(enrollments::id).order(enrollments::id).load(conn).await)
        }
        "lesson_progress" => {
            db_run!(conn => lesson_progress::table.select(lesson_progress::id).order(lesson_progress::id).load(conn).await)
        }
        _ => {
            db_run!(conn => exercise_submissions::table.select(exercise_submissions::id).order(exercise_submissions::id).load(conn).await)
        }
    }
    .unwrap()
}

/// Completions set, moved and cleared; lessons completed and uncompleted; submissions moved;
/// rows deleted one by one and with their enrollment or user.
async fn change_and_delete(conn: &mut DbConn, rng: &mut SplitMix64, user_ids: &[i64]) {
    for id in ids_of(conn, "enrollments").await {
        match rng.below(8) {
            0 => {
                let at = Some(moment(rng));
                db_run!(conn => diesel::update(enrollments::table.find(id))
                    .set((enrollments::status.eq("completed"), enrollments::completed_at.eq(at)))
                    .execute(conn).await)
                .unwrap();
            }
            1 => {
                db_run!(conn => diesel::update(enrollments::table.find(id))
                    .set((enrollments::status.eq("dropped"), enrollments::completed_at.eq(None::<NaiveDateTime>)))
                    .execute(conn).await)
                .unwrap();
            }
            2 => {
                let at = moment(rng);
                db_run!(conn => diesel::update(enrollments::table.find(id))
                    .set(enrollments::enrolled_at.eq(at))
                    .execute(conn).await)
                .unwrap();
            }
            3 => {
                db_run!(conn => diesel::delete(enrollments::table.find(id)).execute(conn).await)
                    .unwrap();
            }
            _ => {}
        }
    }
    for id in ids_of(conn, "lesson_progress").await {
        match rng.below(6) {
            0 => {
                let at = Some(moment(rng));
                db_run!(conn => diesel::update(lesson_progress::table.find(id))
                    .set((lesson_progress::completed.eq(true), lesson_progress::completed_at.eq(at)))
                    .execute(conn).await)
                .unwrap();
            }
            1 => {
                db_run!(conn => diesel::update(lesson_progress::table.find(id))
                    .set((lesson_progress::completed.eq(false), lesson_progress::completed_at.eq(None::<NaiveDateTime>)))
                    .execute(conn).await)
                .unwrap();
            }
            2 => {
                db_run!(conn => diesel::delete(lesson_progress::table.find(id)).execute(conn).await)
                    .unwrap();
            }
            _ => {}
        }
    }
    for id in ids_of(conn, "exercise_submissions").await {
        match rng.below(6) {
            0 => {
                let at = moment(rng);
                db_run!(conn => diesel::update(exercise_submissions::table.find(id))
                    .set(exercise_submissions::submitted_at.eq(at))
                    .execute(conn).await)
                .unwrap();
            }
            1 => {
                db_run!(conn => diesel::delete(exercise_submissions::table.find(id)).execute(conn).await)
                    .unwrap();
            }
            _ => {}
        }
    }
    // A learner with everything they did.
    let gone = user_ids[0];
    db_run!(conn => diesel::delete(users::table.find(gone)).execute(conn).await).unwrap();
}

async fn rollup_equals_the_raw_query_on_random_data(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut rng = SplitMix64::new(0x5eed_2026);
    let mut conn = app.db.conn().await.unwrap();
    let new_users: Vec<NewUser> = (0..40)
        .map(|n| NewUser {
            email: format!("rollup{n}@example.com"),
            email_normalized: format!("rollup{n}@example.com"),
            display_name: format!("Rollup {n}"),
            role: Role::Learner,
            created_at: start(),
        })
        .collect();
    User::insert_many(&mut conn, &new_users).await.unwrap();
    let emails: Vec<String> = new_users
        .iter()
        .map(|u| u.email_normalized.clone())
        .collect();
    let user_ids: Vec<i64> = User::ids_by_email(&mut conn, &emails)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(user_ids.len(), 40);

    insert_activity(&mut conn, &mut rng, &user_ids, 1).await;
    assert_rollup_equals_raw(&mut conn, &mut rng, "after the inserts").await;

    change_and_delete(&mut conn, &mut rng, &user_ids).await;
    // More rows on days whose bitmaps are stored now.
    insert_activity(&mut conn, &mut rng, &user_ids[1..], 10).await;
    assert_rollup_equals_raw(&mut conn, &mut rng, "after updates, deletes and inserts").await;

    // The RPC answers from the rollup too.
    let range = StatsRange {
        from: start() + Duration::hours(5),
        to: start() + Duration::days(45) + Duration::minutes(7),
    };
    let raw = enrollment_stats_raw(&mut conn, range).await.unwrap();
    drop(conn);
    let reply = app
        .client()
        .enrollment_stats(pb::EnrollmentStatsRequest {
            from: Some(time::to_timestamp(range.from)),
            to: Some(time::to_timestamp(range.to)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            reply.total_enrollments,
            reply.total_completions,
            reply.active_learners,
            reply.days.len()
        ),
        (
            raw.total_enrollments,
            raw.total_completions,
            raw.active_learners,
            raw.days.len()
        )
    );
    assert!(raw.active_learners > 10, "the range holds real activity");
}
