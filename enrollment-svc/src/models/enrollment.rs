//! `enrollments`: a learner in a course, with its status (active, completed, dropped).
use chrono::{NaiveDate, NaiveDateTime};
use diesel::{dsl::sql, prelude::*, sql_types};
use diesel_async::RunQueryDsl;
use learnhub_db::{DbConn, db_run};

use crate::{domain::EnrollmentStatus, models::INSERT_CHUNK, schema::enrollments};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = enrollments)]
pub struct Enrollment {
    pub id: i64,
    pub user_id: i64,
    pub course_id: i64,
    pub status: EnrollmentStatus,
    pub enrolled_at: NaiveDateTime,
    pub completed_at: Option<NaiveDateTime>,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = enrollments, treat_none_as_default_value = false)]
pub struct NewEnrollment {
    pub user_id: i64,
    pub course_id: i64,
    pub status: EnrollmentStatus,
    pub enrolled_at: NaiveDateTime,
    pub completed_at: Option<NaiveDateTime>,
    pub updated_at: NaiveDateTime,
}

impl Enrollment {
    pub async fn find(conn: &mut DbConn, id: i64) -> QueryResult<Option<Self>> {
        db_run!(conn => enrollments::table
            .find(id)
            .select(Self::as_select())
            .first(conn)
            .await
            .optional())
    }

    /// The user's enrollment in a course (served by UNIQUE (user_id, course_id)).
    pub async fn find_for_course(
        conn: &mut DbConn,
        user_id: i64,
        course_id: i64,
    ) -> QueryResult<Option<Self>> {
        db_run!(conn => enrollments::table
            .filter(enrollments::user_id.eq(user_id))
            .filter(enrollments::course_id.eq(course_id))
            .select(Self::as_select())
            .first(conn)
            .await
            .optional())
    }

    /// Inserts unless the user is already enrolled in the course: 1 row inserted, or 0 when a
    /// concurrent (or earlier) Enroll got there first. Never a unique violation.
    pub async fn insert_if_absent(conn: &mut DbConn, new: &NewEnrollment) -> QueryResult<usize> {
        db_run!(conn => diesel::insert_into(enrollments::table)
            .values(new)
            .on_conflict_do_nothing()
            .execute(conn)
            .await)
    }

    /// One page of a user's enrollments, newest first, before `before_id`: one statement
    /// (idx_enrollments_user_status with a status, UNIQUE (user_id, course_id) without).
    pub async fn list(
        conn: &mut DbConn,
        user_id: i64,
        status: Option<EnrollmentStatus>,
        before_id: Option<i64>,
        limit: i64,
    ) -> QueryResult<Vec<Self>> {
        db_run!(conn => {
            let mut query = enrollments::table
                .filter(enrollments::user_id.eq(user_id))
                .select(Self::as_select())
                .into_boxed();
            if let Some(status) = status {
                query = query.filter(enrollments::status.eq(status));
            }
            if let Some(before) = before_id {
                query = query.filter(enrollments::id.lt(before));
            }
            query.order(enrollments::id.desc()).limit(limit).load(conn).await
        })
    }

    /// The user's enrollments among `course_ids`, in one statement.
    pub async fn for_courses(
        conn: &mut DbConn,
        user_id: i64,
        course_ids: &[i64],
    ) -> QueryResult<Vec<Self>> {
        if course_ids.is_empty() {
            return Ok(Vec::new());
        }
        db_run!(conn => enrollments::table
            .filter(enrollments::user_id.eq(user_id))
            .filter(enrollments::course_id.eq_any(course_ids))
            .select(Self::as_select())
            .load(conn)
            .await)
    }

    /// Moves an enrollment to `to` only when its status is one `to` may be reached from, in one
    /// statement, so two concurrent changes cannot both pass a check made before the write.
    /// `None`: no such enrollment, or its status did not allow the move.
    pub async fn transition(
        conn: &mut DbConn,
        id: i64,
        to: EnrollmentStatus,
        now: NaiveDateTime,
    ) -> QueryResult<Option<Self>> {
        let completed_at = (to == EnrollmentStatus::Completed).then_some(now);
        db_run!(conn => diesel::update(
                enrollments::table
                    .filter(enrollments::id.eq(id))
                    .filter(enrollments::status.eq_any(to.allowed_from())),
            )
            .set((
                enrollments::status.eq(to),
                enrollments::completed_at.eq(completed_at),
                enrollments::updated_at.eq(now),
            ))
            .returning(Self::as_returning())
            .get_result(conn)
            .await
            .optional())
    }

    /// Enrollments per UTC day of `enrolled_at` in `[from, to)`: one statement, a range scan of
    /// idx_enrollments_enrolled_at. `date(ts)` reads the same on both backends (a date on
    /// Postgres, `YYYY-MM-DD` text on SQLite, which diesel parses as a date).
    pub async fn enrolled_per_day(
        conn: &mut DbConn,
        from: NaiveDateTime,
        to: NaiveDateTime,
    ) -> QueryResult<Vec<(NaiveDate, i64)>> {
        db_run!(conn => {
            let day = sql::<sql_types::Date>("date(enrollments.enrolled_at)");
            enrollments::table
                .filter(enrollments::enrolled_at.ge(from))
                .filter(enrollments::enrolled_at.lt(to))
                .group_by(day.clone())
                .select((day, diesel::dsl::count_star()))
                .load(conn)
                .await
        })
    }

    /// Completions per UTC day of `completed_at` in `[from, to)` (idx_enrollments_completed_at).
    pub async fn completed_per_day(
        conn: &mut DbConn,
        from: NaiveDateTime,
        to: NaiveDateTime,
    ) -> QueryResult<Vec<(NaiveDate, i64)>> {
        db_run!(conn => {
            let day = sql::<sql_types::Date>("date(enrollments.completed_at)");
            enrollments::table
                .filter(enrollments::completed_at.ge(from))
                .filter(enrollments::completed_at.lt(to))
                .group_by(day.clone())
                .select((day, diesel::dsl::count_star()))
                .load(conn)
                .await
        })
    }

    /// `(id, user_id, course_id)` of the enrollments of these users (the seed reads back ids).
    pub async fn keys_for_users(
        conn: &mut DbConn,
        user_ids: &[i64],
    ) -> QueryResult<Vec<(i64, i64, i64)>> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        db_run!(conn => enrollments::table
            .filter(enrollments::user_id.eq_any(user_ids))
            .select((enrollments::id, enrollments::user_id, enrollments::course_id))
            .order(enrollments::id.asc())
            .load(conn)
            .await)
    }

    /// Inserts many rows in multi-row statements.
    pub async fn insert_many(conn: &mut DbConn, rows: &[NewEnrollment]) -> QueryResult<usize> {
        let mut inserted = 0;
        for chunk in rows.chunks(INSERT_CHUNK) {
            inserted += learnhub_db::db_insert_many!(conn, enrollments::table, chunk.to_vec())?;
        }
        Ok(inserted)
    }
}
