//! `exercises`: the practice exercises of a lesson.
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use learnhub_db::{DbConn, db_run};

use crate::schema::exercises;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = exercises)]
pub struct Exercise {
    pub id: i64,
    pub lesson_id: i64,
    pub title: String,
    pub prompt: String,
    pub starter_code: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = exercises, treat_none_as_default_value = false)]
pub struct NewExercise {
    pub lesson_id: i64,
    pub title: String,
    pub prompt: String,
    pub starter_code: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = exercises)]
pub struct ExerciseChanges {
    pub title: Option<String>,
    pub prompt: Option<String>,
    pub starter_code: Option<String>,
    pub updated_at: Option<NaiveDateTime>,
}

impl Exercise {
    pub async fn find(conn: &mut DbConn, id: i64) -> QueryResult<Option<Self>> {
        db_run!(conn => exercises::table
            .find(id)
            .select(Self::as_select())
            .first(conn)
            .await
            .optional())
    }

    /// A lesson's exercises in id order (served by idx_exercises_lesson).
    pub async fn for_lesson(conn: &mut DbConn, lesson_id: i64) -> QueryResult<Vec<Self>> {
        db_run!(conn => exercises::table
            .filter(exercises::lesson_id.eq(lesson_id))
            .order(exercises::id.asc())
            .select(Self::as_select())
            .load(conn)
            .await)
    }

    pub async fn insert(conn: &mut DbConn, new: &NewExercise) -> QueryResult<Self> {
        db_run!(conn => diesel::insert_into(exercises::table)
            .values(new)
            .returning(Self::as_returning())
            .get_result(conn)
            .await)
    }

    pub async fn update(
        conn: &mut DbConn,
        id: i64,
        changes: &ExerciseChanges,
    ) -> QueryResult<Option<Self>> {
        db_run!(conn => diesel::update(exercises::table.find(id))
            .set(changes)
            .returning(Self::as_returning())
            .get_result(conn)
            .await
            .optional())
    }

    pub async fn delete(conn: &mut DbConn, id: i64) -> QueryResult<Option<Self>> {
        db_run!(conn => diesel::delete(exercises::table.find(id))
            .returning(Self::as_returning())
            .get_result(conn)
            .await
            .optional())
    }

    /// Inserts many rows in multi-row statements (chunks stay under SQLite's bind limit).
    pub async fn insert_many(conn: &mut DbConn, rows: &[NewExercise]) -> QueryResult<usize> {
        let mut inserted = 0;
        for chunk in rows.chunks(1_000) {
            inserted += learnhub_db::db_insert_many!(conn, exercises::table, chunk.to_vec())?;
        }
        Ok(inserted)
    }
}
