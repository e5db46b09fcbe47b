//! `users`: learners and admins, unique by lowercased email.
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use learnhub_db::{DbConn, db_run};

use crate::{domain::Role, models::INSERT_CHUNK, schema::users};

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub email_normalized: String,
    pub display_name: String,
    pub role: Role,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser {
    pub email: String,
    pub email_normalized: String,
    pub display_name: String,
    pub role: Role,
    pub created_at: NaiveDateTime,
}

impl User {
    pub async fn find(conn: &mut DbConn, id: i64) -> QueryResult<Option<Self>> {
        db_run!(conn => users::table
            .find(id)
            .select(Self::as_select())
            .first(conn)
            .await
            .optional())
    }

    /// One statement on the unique index over the lowercased email.
    pub async fn find_by_email(conn: &mut DbConn, normalized: &str) -> QueryResult<Option<Self>> {
        db_run!(conn => users::table
            .filter(users::email_normalized.eq(normalized))
            .select(Self::as_select())
            .first(conn)
            .await
            .optional())
    }

    /// Fails with a unique violation when the email is taken (in any case).
    pub async fn insert(conn: &mut DbConn, new: &NewUser) -> QueryResult<Self> {
        db_run!(conn => diesel::insert_into(users::table)
            .values(new)
            .returning(Self::as_returning())
            .get_result(conn)
            .await)
    }

    /// `(id, email_normalized)` of the users with these emails (the seed reads back its ids).
    pub async fn ids_by_email(
        conn: &mut DbConn,
        normalized: &[String],
    ) -> QueryResult<Vec<(i64, String)>> {
        if normalized.is_empty() {
            return Ok(Vec::new());
        }
        db_run!(conn => users::table
            .filter(users::email_normalized.eq_any(normalized))
            .select((users::id, users::email_normalized))
            .load(conn)
            .await)
    }

    /// Inserts many rows in multi-row statements.
    pub async fn insert_many(conn: &mut DbConn, rows: &[NewUser]) -> QueryResult<usize> {
        let mut inserted = 0;
        for chunk in rows.chunks(INSERT_CHUNK) {
            inserted += learnhub_db::db_insert_many!(conn, users::table, chunk.to_vec())?;
        }
        Ok(inserted)
    }
}
