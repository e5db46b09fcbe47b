//! EnrollmentStats from the daily rollup equals the raw query (`analytics::enrollment_stats_raw`)
//! on randomized data written behind the service's back: backdated model inserts, completions set,
//! moved and cleared, lessons uncompleted, deletes cascading from enrollments and users, and new
//! rows on days whose bitmaps are already stored; for random ranges, midnight-aligned or not, and
//! ranges whose ends fall on, just before or just after activity on busy learner-days (several
//! events a day), before and after those days' first and last events are deleted or moved.
use chrono::{Duration, NaiveDate, NaiveDateTime};
use diesel::{ExpressionMethods, OptionalExtension, QueryDsl};
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
/// Days (from `start()`) on which half the learners are busy: several events each.
const BUSY_DAYS: [i64; 3] = [5, 6, 33];
/// Busy-day enrollments are in courses `BUSY_COURSE + day`.
const BUSY_COURSE: i64 = 100;

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
        // Busy-day enrollments have their lessons already.
        if course_id < first_course || course_id >= BUSY_COURSE {
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

/// A moment of the busy day `day`, to the microsecond.
fn moment_on(day: i64, rng: &mut SplitMix64) -> NaiveDateTime {
    start() + Duration::days(day) + Duration::microseconds(rng.below(86_400_000_000) as i64)
}

/// On each busy day, for each learner: 2–4 submissions, and an enrollment
/// (course `BUSY_COURSE + day`) enrolled that day, completed that day half the time, with 1–3
/// lessons completed that day.
async fn insert_busy_days(conn: &mut DbConn, rng: &mut SplitMix64, user_ids: &[i64]) {
    let mut rows = Vec::new();
    let mut submissions = Vec::new();
    for &user_id in user_ids {
        for day in BUSY_DAYS {
            let enrolled_at = moment_on(day, rng);
            let completed_at = (rng.below(2) == 0).then(|| moment_on(day, rng));
            rows.push(NewEnrollment {
                user_id,
                course_id: BUSY_COURSE + day,
                status: if completed_at.is_some() {
                    EnrollmentStatus::Completed
                } else {
                    EnrollmentStatus::Active
                },
                enrolled_at,
                completed_at,
                updated_at: enrolled_at,
            });
            for _ in 0..2 + rng.below(3) {
                submissions.push(NewSubmission {
                    submitted_at: moment_on(day, rng),
                    ..submission(user_id, rng)
                });
            }
        }
    }
    Enrollment::insert_many(conn, &rows).await.unwrap();
    Submission::insert_many(conn, &submissions).await.unwrap();
    let mut lessons = Vec::new();
    for (enrollment_id, _, course_id) in Enrollment::keys_for_users(conn, user_ids).await.unwrap() {
        if course_id < BUSY_COURSE {
            continue;
        }
        for lesson_id in 0..1 + rng.below(3) as i64 {
            let completed_at = moment_on(course_id - BUSY_COURSE, rng);
            lessons.push(NewLessonProgress {
                enrollment_id,
                lesson_id,
                completed: true,
                completed_at: Some(completed_at),
                updated_at: completed_at,
            });
        }
    }
    LessonProgress::insert_many(conn, &lessons).await.unwrap();
}

/// Every activity moment in the raw tables, sorted.
async fn activity_moments(conn: &mut DbConn) -> Vec<NaiveDateTime> {
    let mut moments: Vec<NaiveDateTime> = db_run!(conn => enrollments::table
        .select(enrollments::enrolled_at).load(conn).await)
    .unwrap();
    let completed: Vec<Option<NaiveDateTime>> = db_run!(conn => enrollments::table
        .select(enrollments::completed_at).load(conn).await)
    .unwrap();
    let lessons: Vec<Option<NaiveDateTime>> = db_run!(conn => lesson_progress::table
        .select(lesson_progress::completed_at).load(conn).await)
    .unwrap();
    let submitted: Vec<NaiveDateTime> = db_run!(conn => exercise_submissions::table
        .select(exercise_submissions::submitted_at).load(conn).await)
    .unwrap();
    moments.extend(completed.into_iter().flatten());
    moments.extend(lessons.into_iter().flatten());
    moments.extend(submitted);
    moments.sort();
    moments
}

/// Ranges over two days or more whose ends fall on an activity moment of a busy day, a
/// microsecond before or after one, or halfway between two: the partial days' learners then
/// hinge on single events, often between a learner's first and last of the day. A few ranges
/// stay inside one day (read from the raw tables).
async fn assert_ends_between_events(conn: &mut DbConn, rng: &mut SplitMix64, phase: &str) {
    let moments = activity_moments(conn).await;
    let busy: Vec<NaiveDateTime> = moments
        .iter()
        .copied()
        .filter(|at| BUSY_DAYS.contains(&(at.date() - start().date()).num_days()))
        .collect();
    let near = |at: NaiveDateTime, rng: &mut SplitMix64| -> NaiveDateTime {
        match rng.below(4) {
            0 => at - Duration::microseconds(1),
            1 => at,
            2 => at + Duration::microseconds(1),
            _ => {
                let next = moments.iter().find(|m| **m > at).copied().unwrap_or(at);
                at + (next - at) / 2
            }
        }
    };
    let mut compared = 0;
    while compared < 2 * RANGES {
        let a = near(busy[rng.below(busy.len() as u64) as usize], rng);
        // The other end: another busy moment, or anywhere in the 60 days.
        let b = if rng.below(3) == 0 {
            moment(rng)
        } else {
            near(busy[rng.below(busy.len() as u64) as usize], rng)
        };
        let (from, to) = if a < b { (a, b) } else { (b, a) };
        // Mostly two days or more; one range in ten inside a day.
        if from == to || (from.date() == to.date() && rng.below(10) != 0) {
            continue;
        }
        compared += 1;
        let range = StatsRange { from, to };
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

/// Takes away the first or the last event of busy learner-days: the earliest or latest
/// submission of a learner's day deleted or moved (to the same day or another), the latest
/// completed lesson uncompleted or deleted, the day's enrollment deleted (with its lessons) or
/// its enrolment moved.
async fn remove_first_and_last_events(conn: &mut DbConn, rng: &mut SplitMix64) {
    let rows: Vec<(i64, i64, NaiveDateTime)> = db_run!(conn => exercise_submissions::table
        .select((exercise_submissions::id, exercise_submissions::user_id, exercise_submissions::submitted_at))
        .order((exercise_submissions::user_id, exercise_submissions::submitted_at))
        .load(conn).await)
    .unwrap();
    let mut days: std::collections::BTreeMap<(i64, NaiveDate), Vec<(i64, NaiveDateTime)>> =
        Default::default();
    for (id, user_id, at) in rows {
        days.entry((user_id, at.date())).or_default().push((id, at));
    }
    for ((_, day), submissions) in days {
        if submissions.len() < 2 {
            continue;
        }
        let (first, last) = (submissions[0].0, submissions[submissions.len() - 1].0);
        let within = |rng: &mut SplitMix64| {
            day.and_hms_opt(0, 0, 0).unwrap()
                + Duration::microseconds(rng.below(86_400_000_000) as i64)
        };
        match rng.below(5) {
            0 => {
                db_run!(conn => diesel::delete(exercise_submissions::table.find(first)).execute(conn).await)
                    .unwrap();
            }
            1 => {
                db_run!(conn => diesel::delete(exercise_submissions::table.find(last)).execute(conn).await)
                    .unwrap();
            }
            2 => {
                let at = within(rng);
                db_run!(conn => diesel::update(exercise_submissions::table.find(first))
                    .set(exercise_submissions::submitted_at.eq(at))
                    .execute(conn).await)
                .unwrap();
            }
            3 => {
                let at = moment(rng);
                db_run!(conn => diesel::update(exercise_submissions::table.find(last))
                    .set(exercise_submissions::submitted_at.eq(at))
                    .execute(conn).await)
                .unwrap();
            }
            _ => {}
        }
    }
    let busy: Vec<(i64, i64)> = db_run!(conn => enrollments::table
        .filter(enrollments::course_id.ge(BUSY_COURSE))
        .select((enrollments::id, enrollments::course_id))
        .order(enrollments::id)
        .load(conn).await)
    .unwrap();
    for (id, course_id) in busy {
        match rng.below(5) {
            0 => {
                db_run!(conn => diesel::delete(enrollments::table.find(id)).execute(conn).await)
                    .unwrap();
            }
            1 => {
                let at = moment_on(course_id - BUSY_COURSE, rng);
                db_run!(conn => diesel::update(enrollments::table.find(id))
                    .set(enrollments::enrolled_at.eq(at))
                    .execute(conn).await)
                .unwrap();
            }
            2 | 3 => {
                let latest: Option<i64> = db_run!(conn => lesson_progress::table
                    .filter(lesson_progress::enrollment_id.eq(id))
                    .filter(lesson_progress::completed_at.is_not_null())
                    .order(lesson_progress::completed_at.desc())
                    .select(lesson_progress::id)
                    .first(conn).await.optional())
                .unwrap();
                let Some(latest) = latest else { continue };
                if rng.below(2) == 0 {
                    db_run!(conn => diesel::update(lesson_progress::table.find(latest))
                        .set((lesson_progress::completed.eq(false), lesson_progress::completed_at.eq(None::<NaiveDateTime>)))
                        .execute(conn).await)
                    .unwrap();
                } else {
                    db_run!(conn => diesel::delete(lesson_progress::table.find(latest)).execute(conn).await)
                        .unwrap();
                }
            }
            _ => {}
        }
    }
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
    insert_busy_days(&mut conn, &mut rng, &user_ids[..20]).await;
    assert_rollup_equals_raw(&mut conn, &mut rng, "after the inserts").await;
    assert_ends_between_events(&mut conn, &mut rng, "ends near events, after the inserts").await;

    remove_first_and_last_events(&mut conn, &mut rng).await;
    assert_ends_between_events(
        &mut conn,
        &mut rng,
        "ends near events, after first and last events went",
    )
    .await;

    change_and_delete(&mut conn, &mut rng, &user_ids).await;
    // More rows on days whose bitmaps are stored now.
    insert_activity(&mut conn, &mut rng, &user_ids[1..], 10).await;
    assert_rollup_equals_raw(&mut conn, &mut rng, "after updates, deletes and inserts").await;
    assert_ends_between_events(
        &mut conn,
        &mut rng,
        "ends near events, after updates, deletes and inserts",
    )
    .await;

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
