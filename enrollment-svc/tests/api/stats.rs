//! EnrollmentStats: per-day buckets in UTC with a half-open range, active learners from every
//! kind of activity, range validation.
use chrono::{Duration, NaiveDate, NaiveDateTime};
use enrollment_svc::{
    domain::EnrollmentStatus,
    models::{
        enrollment::{Enrollment, NewEnrollment},
        exercise_submission::{NewSubmission, Submission},
        lesson_progress::{LessonProgress, NewLessonProgress},
    },
};
use learnhub_db::Backend;
use learnhub_kit::time;
use learnhub_proto::enrollment::v1 as pb;
use tonic::Code;

use crate::{
    helpers::{assert_status, spawn_app},
    on_both_backends,
};

on_both_backends!(
    stats_bucket_by_utc_day,
    stats_include_todays_activity,
    bad_ranges_name_the_field
);

fn at(day: NaiveDate, h: u32, m: u32, s: u32, micros: u32) -> NaiveDateTime {
    day.and_hms_micro_opt(h, m, s, micros).unwrap()
}

fn ts(at: NaiveDateTime) -> Option<prost_types::Timestamp> {
    Some(time::to_timestamp(at))
}

fn enrollment(
    user_id: i64,
    course_id: i64,
    enrolled_at: NaiveDateTime,
    completed_at: Option<NaiveDateTime>,
) -> NewEnrollment {
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

async fn stats_bucket_by_utc_day(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut users = Vec::new();
    for _ in 0..6 {
        users.push(app.user().await.id);
    }
    let d = NaiveDate::from_ymd_opt(2026, 3, 10).unwrap();
    let next = |n| d + Duration::days(n);
    let mut conn = app.db.conn().await.unwrap();
    Enrollment::insert_many(
        &mut conn,
        &[
            enrollment(
                users[0],
                1,
                at(d, 0, 0, 0, 0),
                Some(at(next(1), 12, 0, 0, 0)),
            ),
            enrollment(users[1], 1, at(d, 23, 59, 59, 500_000), None),
            enrollment(users[2], 1, at(next(-1), 23, 0, 0, 0), None),
            enrollment(users[4], 1, at(next(3), 0, 0, 0, 0), None),
        ],
    )
    .await
    .unwrap();
    let keys = Enrollment::keys_for_users(&mut conn, &[users[2]])
        .await
        .unwrap();
    let progressed_at = at(next(1), 10, 0, 0, 0);
    LessonProgress::insert_many(
        &mut conn,
        &[NewLessonProgress {
            enrollment_id: keys[0].0,
            lesson_id: 1,
            completed: true,
            completed_at: Some(progressed_at),
            updated_at: progressed_at,
        }],
    )
    .await
    .unwrap();
    Submission::insert_many(
        &mut conn,
        &[NewSubmission {
            user_id: users[3],
            exercise_id: 1,
            code: "print(1)".into(),
            passed: true,
            score: 100,
            submitted_at: at(next(2), 8, 0, 0, 0),
        }],
    )
    .await
    .unwrap();
    drop(conn);

    let stats = app
        .client()
        .enrollment_stats(pb::EnrollmentStatsRequest {
            from: ts(at(d, 0, 0, 0, 0)),
            to: ts(at(next(3), 0, 0, 0, 0)),
        })
        .await
        .unwrap()
        .into_inner();
    let days: Vec<(&str, i64, i64)> = stats
        .days
        .iter()
        .map(|c| (c.day.as_str(), c.enrollments, c.completions))
        .collect();
    assert_eq!(
        days,
        vec![
            ("2026-03-10", 2, 0),
            ("2026-03-11", 0, 1),
            ("2026-03-12", 0, 0)
        ]
    );
    assert_eq!(
        stats.total_enrollments, 2,
        "from is inclusive, to exclusive"
    );
    assert_eq!(stats.total_completions, 1);
    assert_eq!(
        stats.active_learners, 4,
        "enrolled (2), progressed (1), submitted (1); not the one enrolled at `to`"
    );

    // A range starting mid-day counts only from that moment.
    let late = app
        .client()
        .enrollment_stats(pb::EnrollmentStatsRequest {
            from: ts(at(d, 12, 0, 0, 0)),
            to: ts(at(next(1), 11, 0, 0, 0)),
        })
        .await
        .unwrap()
        .into_inner();
    let days: Vec<(&str, i64, i64)> = late
        .days
        .iter()
        .map(|c| (c.day.as_str(), c.enrollments, c.completions))
        .collect();
    assert_eq!(days, vec![("2026-03-10", 1, 0), ("2026-03-11", 0, 0)]);
    assert_eq!(
        late.active_learners, 2,
        "user 2 enrolled, user 3 progressed at 10:00"
    );
}

async fn stats_include_todays_activity(backend: Backend) {
    let app = spawn_app(backend).await;
    let course = app.course(true, 1).await;
    let user = app.user().await;
    let enrollment = app.enroll(user.id, course.id).await;
    app.complete_lesson(enrollment.id, course.lessons[0]).await;
    let now = time::now();
    let stats = app
        .client()
        .enrollment_stats(pb::EnrollmentStatsRequest {
            from: ts(now - Duration::days(1)),
            to: ts(now + Duration::hours(1)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.total_enrollments, 1);
    assert_eq!(
        stats.total_completions, 1,
        "completing the only lesson completed the course"
    );
    assert_eq!(stats.active_learners, 1);
    let today = now.date().format("%Y-%m-%d").to_string();
    let bucket = stats
        .days
        .iter()
        .find(|d| d.day == today)
        .expect("today is in the range");
    assert_eq!((bucket.enrollments, bucket.completions), (1, 1));
}

async fn bad_ranges_name_the_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut c = app.client();
    let d = at(NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(), 0, 0, 0, 0);
    let range =
        |from: Option<NaiveDateTime>, to: Option<NaiveDateTime>| pb::EnrollmentStatsRequest {
            from: from.and_then(ts),
            to: to.and_then(ts),
        };
    c.enrollment_stats(range(Some(d), Some(d + Duration::days(366))))
        .await
        .expect("366 days is allowed");
    for (request, field) in [
        (range(Some(d), Some(d - Duration::days(1))), "to"),
        (range(Some(d), Some(d)), "to"),
        (
            range(
                Some(d),
                Some(d + Duration::days(366) + Duration::seconds(1)),
            ),
            "to",
        ),
        (range(None, Some(d)), "from"),
        (range(Some(d), None), "to"),
        (
            pb::EnrollmentStatsRequest {
                from: Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: -1,
                }),
                to: ts(d),
            },
            "from",
        ),
    ] {
        assert_status(
            c.enrollment_stats(request).await,
            Code::InvalidArgument,
            field,
        );
    }
}
