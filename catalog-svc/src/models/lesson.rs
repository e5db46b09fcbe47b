//! `lessons`: the ordered lessons of a course.
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use learnhub_db::{DbConn, db_run};

use crate::schema::lessons;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = lessons)]
pub struct Lesson {
    pub id: i64,
    pub course_id: i64,
    pub position: i32,
    pub title: String,
    pub body: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = lessons, treat_none_as_default_value = false)]
pub struct NewLesson {
    pub course_id: i64,
    pub position: i32,
    pub title: String,
    pub body: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = lessons)]
pub struct LessonChanges {
    pub title: Option<String>,
    pub body: Option<String>,
    pub position: Option<i32>,
    pub updated_at: Option<NaiveDateTime>,
}

impl Lesson {
    /// A course's lessons in position order: one statement (served by UNIQUE (course_id, position)).
    pub async fn for_course(conn: &mut DbConn, course_id: i64) -> QueryResult<Vec<Self>> {
        db_run!(conn => lessons::table
            .filter(lessons::course_id.eq(course_id))
            .order(lessons::position.asc())
            .select(Self::as_select())
            .load(conn)
            .await)
    }

    pub async fn find(conn: &mut DbConn, id: i64) -> QueryResult<Option<Self>> {
        db_run!(conn => lessons::table
            .find(id)
            .select(Self::as_select())
            .first(conn)
            .await
            .optional())
    }

    pub async fn find_many(conn: &mut DbConn, ids: &[i64]) -> QueryResult<Vec<Self>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        db_run!(conn => lessons::table
            .filter(lessons::id.eq_any(ids))
            .order(lessons::id.asc())
            .select(Self::as_select())
            .load(conn)
            .await)
    }

    /// Inserts a lesson; without a position it goes after the course's last lesson. The next
    /// position is read and written in one transaction; a concurrent insert that takes the same
    /// position fails on the unique index instead of duplicating it.
    pub async fn insert(
        conn: &mut DbConn,
        course_id: i64,
        position: Option<i32>,
        title: String,
        body: String,
        now: NaiveDateTime,
    ) -> QueryResult<Self> {
        db_run!(conn => conn.transaction(async |conn| {
            let position = match position {
                Some(position) => position,
                None => {
                    let last: Option<i32> = lessons::table
                        .filter(lessons::course_id.eq(course_id))
                        .select(diesel::dsl::max(lessons::position))
                        .first(conn)
                        .await?;
                    last.unwrap_or(0) + 1
                }
            };
            let new = NewLesson { course_id, position, title, body, created_at: now, updated_at: now };
            diesel::insert_into(lessons::table)
                .values(&new)
                .returning(Self::as_returning())
                .get_result(conn)
                .await
        }).await)
    }

    pub async fn update(
        conn: &mut DbConn,
        id: i64,
        changes: &LessonChanges,
    ) -> QueryResult<Option<Self>> {
        db_run!(conn => diesel::update(lessons::table.find(id))
            .set(changes)
            .returning(Self::as_returning())
            .get_result(conn)
            .await
            .optional())
    }

    /// Deletes a lesson (its exercises cascade); `None` when there was no such lesson.
    pub async fn delete(conn: &mut DbConn, id: i64) -> QueryResult<Option<Self>> {
        db_run!(conn => diesel::delete(lessons::table.find(id))
            .returning(Self::as_returning())
            .get_result(conn)
            .await
            .optional())
    }

    /// Inserts many rows in multi-row statements (chunks stay under SQLite's bind limit).
    pub async fn insert_many(conn: &mut DbConn, rows: &[NewLesson]) -> QueryResult<usize> {
        let mut inserted = 0;
        for chunk in rows.chunks(1_000) {
            inserted += learnhub_db::db_insert_many!(conn, lessons::table, chunk.to_vec())?;
        }
        Ok(inserted)
    }
}
