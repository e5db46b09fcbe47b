//! `exercise_submissions`: code a learner submitted for an exercise, with its result.
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use learnhub_db::{DbConn, db_run};

use crate::{models::INSERT_CHUNK, schema::exercise_submissions};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = exercise_submissions)]
pub struct Submission {
    pub id: i64,
    pub user_id: i64,
    pub exercise_id: i64,
    pub code: String,
    pub passed: bool,
    pub score: i32,
    pub submitted_at: NaiveDateTime,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = exercise_submissions)]
pub struct NewSubmission {
    pub user_id: i64,
    pub exercise_id: i64,
    pub code: String,
    pub passed: bool,
    pub score: i32,
    pub submitted_at: NaiveDateTime,
}

impl Submission {
    /// Fails with a foreign-key violation when the user does not exist.
    pub async fn insert(conn: &mut DbConn, new: &NewSubmission) -> QueryResult<Self> {
        db_run!(conn => diesel::insert_into(exercise_submissions::table)
            .values(new)
            .returning(Self::as_returning())
            .get_result(conn)
            .await)
    }

    /// One page of a user's submissions, newest (highest id) first, before `before_id`: one
    /// statement (idx_exercise_submissions_user_exercise for one exercise,
    /// idx_exercise_submissions_user for all). Ids grow with time, so id order is submission
    /// order without a second sort key.
    pub async fn list(
        conn: &mut DbConn,
        user_id: i64,
        exercise_id: Option<i64>,
        before_id: Option<i64>,
        limit: i64,
    ) -> QueryResult<Vec<Self>> {
        db_run!(conn => {
            let mut query = exercise_submissions::table
                .filter(exercise_submissions::user_id.eq(user_id))
                .select(Self::as_select())
                .into_boxed();
            if let Some(exercise) = exercise_id {
                query = query.filter(exercise_submissions::exercise_id.eq(exercise));
            }
            if let Some(before) = before_id {
                query = query.filter(exercise_submissions::id.lt(before));
            }
            query.order(exercise_submissions::id.desc()).limit(limit).load(conn).await
        })
    }

    /// Inserts many rows in multi-row statements.
    pub async fn insert_many(conn: &mut DbConn, rows: &[NewSubmission]) -> QueryResult<usize> {
        let mut inserted = 0;
        for chunk in rows.chunks(INSERT_CHUNK) {
            inserted +=
                learnhub_db::db_insert_many!(conn, exercise_submissions::table, chunk.to_vec())?;
        }
        Ok(inserted)
    }
}
