//! `lesson_progress`: one row per (enrollment, lesson) a learner has touched, and the write that
//! records progress and completes the enrollment when every lesson is done.
use chrono::NaiveDateTime;
use diesel::{prelude::*, upsert::excluded};
use diesel_async::{AsyncConnection, RunQueryDsl};
use learnhub_db::{DbConn, db_run};

use crate::{
    domain::EnrollmentStatus,
    models::{INSERT_CHUNK, enrollment::Enrollment},
    schema::{enrollments, lesson_progress},
};

diesel::define_sql_function!(fn coalesce(x: diesel::sql_types::Nullable<diesel::sql_types::Timestamp>, y: diesel::sql_types::Nullable<diesel::sql_types::Timestamp>) -> diesel::sql_types::Nullable<diesel::sql_types::Timestamp>);

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = lesson_progress)]
pub struct LessonProgress {
    pub id: i64,
    pub enrollment_id: i64,
    pub lesson_id: i64,
    pub completed: bool,
    pub completed_at: Option<NaiveDateTime>,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = lesson_progress, treat_none_as_default_value = false)]
pub struct NewLessonProgress {
    pub enrollment_id: i64,
    pub lesson_id: i64,
    pub completed: bool,
    pub completed_at: Option<NaiveDateTime>,
    pub updated_at: NaiveDateTime,
}

/// What recording one lesson's progress did.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// The progress row is written; `enrollment` is as it is after the write (completed when
    /// this made every lesson complete) and `rows` are all its progress rows.
    Done {
        enrollment: Enrollment,
        rows: Vec<LessonProgress>,
    },
    /// A dropped enrollment takes no progress; nothing was written.
    Dropped(Enrollment),
    NoEnrollment,
}

impl LessonProgress {
    /// An enrollment's progress rows in lesson id order (served by UNIQUE (enrollment_id, lesson_id)).
    pub async fn for_enrollment(conn: &mut DbConn, enrollment_id: i64) -> QueryResult<Vec<Self>> {
        db_run!(conn => lesson_progress::table
            .filter(lesson_progress::enrollment_id.eq(enrollment_id))
            .order(lesson_progress::lesson_id.asc())
            .select(Self::as_select())
            .load(conn)
            .await)
    }

    /// `(enrollment_id, completed lessons)` for each of `enrollment_ids` with at least one, in
    /// one statement (idx_lesson_progress_enrollment_completed, index-only).
    pub async fn completed_counts(
        conn: &mut DbConn,
        enrollment_ids: &[i64],
    ) -> QueryResult<Vec<(i64, i64)>> {
        if enrollment_ids.is_empty() {
            return Ok(Vec::new());
        }
        db_run!(conn => lesson_progress::table
            .filter(lesson_progress::enrollment_id.eq_any(enrollment_ids))
            .filter(lesson_progress::completed.eq(true))
            .group_by(lesson_progress::enrollment_id)
            .select((lesson_progress::enrollment_id, diesel::dsl::count_star()))
            .load(conn)
            .await)
    }

    /// Records `lesson_id` as completed or not in one transaction: idempotent per (enrollment,
    /// lesson) (an upsert; completing again keeps the first `completed_at`), and when every one
    /// of `course_lessons` is complete an active enrollment becomes completed.
    ///
    /// The transaction starts by writing the enrollment row. That takes its row lock on
    /// Postgres, so two lessons completed at once cannot each miss the other's row and leave
    /// the enrollment active; on SQLite it takes the write lock before anything is read, so a
    /// read snapshot never has to be upgraded (which fails with SQLITE_BUSY instead of waiting).
    pub async fn record(
        conn: &mut DbConn,
        enrollment_id: i64,
        lesson_id: i64,
        completed: bool,
        course_lessons: &[i64],
        now: NaiveDateTime,
    ) -> QueryResult<Recorded> {
        let new = NewLessonProgress {
            enrollment_id,
            lesson_id,
            completed,
            completed_at: completed.then_some(now),
            updated_at: now,
        };
        db_run!(conn => conn.transaction(async |conn| {
            // A dropped enrollment is not touched: the refusal writes nothing.
            let locked: Option<Enrollment> = diesel::update(
                    enrollments::table
                        .filter(enrollments::id.eq(enrollment_id))
                        .filter(enrollments::status.ne(EnrollmentStatus::Dropped)),
                )
                .set(enrollments::updated_at.eq(now))
                .returning(Enrollment::as_returning())
                .get_result(conn)
                .await
                .optional()?;
            let Some(enrollment) = locked else {
                let found: Option<Enrollment> = enrollments::table
                    .find(enrollment_id)
                    .select(Enrollment::as_select())
                    .first(conn)
                    .await
                    .optional()?;
                return Ok(found.map_or(Recorded::NoEnrollment, Recorded::Dropped));
            };
            let upsert = diesel::insert_into(lesson_progress::table)
                .values(&new)
                .on_conflict((lesson_progress::enrollment_id, lesson_progress::lesson_id))
                .do_update();
            if completed {
                upsert
                    .set((
                        lesson_progress::completed.eq(true),
                        lesson_progress::completed_at.eq(coalesce(
                            lesson_progress::completed_at,
                            excluded(lesson_progress::completed_at),
                        )),
                        lesson_progress::updated_at.eq(now),
                    ))
                    .execute(conn)
                    .await?;
            } else {
                upsert
                    .set((
                        lesson_progress::completed.eq(false),
                        lesson_progress::completed_at.eq(None::<NaiveDateTime>),
                        lesson_progress::updated_at.eq(now),
                    ))
                    .execute(conn)
                    .await?;
            }
            let rows: Vec<LessonProgress> = lesson_progress::table
                .filter(lesson_progress::enrollment_id.eq(enrollment_id))
                .order(lesson_progress::lesson_id.asc())
                .select(LessonProgress::as_select())
                .load(conn)
                .await?;
            let mut enrollment = enrollment;
            if completed
                && enrollment.status == EnrollmentStatus::Active
                && all_complete(course_lessons, &rows)
            {
                enrollment = diesel::update(
                    enrollments::table
                        .filter(enrollments::id.eq(enrollment_id))
                        .filter(enrollments::status.eq(EnrollmentStatus::Active)),
                )
                .set((
                    enrollments::status.eq(EnrollmentStatus::Completed),
                    enrollments::completed_at.eq(Some(now)),
                ))
                .returning(Enrollment::as_returning())
                .get_result(conn)
                .await?;
            }
            Ok(Recorded::Done { enrollment, rows })
        }).await)
    }

    /// Inserts many rows in multi-row statements.
    pub async fn insert_many(conn: &mut DbConn, rows: &[NewLessonProgress]) -> QueryResult<usize> {
        let mut inserted = 0;
        for chunk in rows.chunks(INSERT_CHUNK) {
            inserted += learnhub_db::db_insert_many!(conn, lesson_progress::table, chunk.to_vec())?;
        }
        Ok(inserted)
    }
}

/// True when the course has lessons and every one of them has a completed row.
fn all_complete(course_lessons: &[i64], rows: &[LessonProgress]) -> bool {
    !course_lessons.is_empty()
        && course_lessons
            .iter()
            .all(|lesson| rows.iter().any(|r| r.lesson_id == *lesson && r.completed))
}
