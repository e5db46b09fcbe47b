//! `courses`: the catalog's courses and every query over them. Reads join the category so a
//! course comes back whole in one statement. Type, level and status are typed columns: a value
//! no variant names fails the read instead of turning into a default.
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use learnhub_db::{DbConn, db_run};

use crate::{
    domain::{CourseLevel, CourseStatus, CourseType},
    schema::{categories, courses},
};

diesel::define_sql_function!(fn coalesce(x: diesel::sql_types::Nullable<diesel::sql_types::Timestamp>, y: diesel::sql_types::Nullable<diesel::sql_types::Timestamp>) -> diesel::sql_types::Nullable<diesel::sql_types::Timestamp>);

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = courses)]
pub struct CourseRow {
    pub id: i64,
    pub slug: String,
    pub title: String,
    pub summary: String,
    pub course_type: CourseType,
    pub category_id: i64,
    pub level: CourseLevel,
    pub status: CourseStatus,
    pub is_featured: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub published_at: Option<NaiveDateTime>,
}

/// A course with its category's slug and name.
#[derive(Debug, Clone, PartialEq)]
pub struct Course {
    pub row: CourseRow,
    pub category_slug: String,
    pub category_name: String,
}

impl From<(CourseRow, String, String)> for Course {
    fn from((row, category_slug, category_name): (CourseRow, String, String)) -> Self {
        Self {
            row,
            category_slug,
            category_name,
        }
    }
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = courses, treat_none_as_default_value = false)]
pub struct NewCourse {
    pub slug: String,
    pub title: String,
    pub summary: String,
    pub course_type: CourseType,
    pub category_id: i64,
    pub level: CourseLevel,
    pub status: CourseStatus,
    pub is_featured: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub published_at: Option<NaiveDateTime>,
}

/// The fields an update may change; `None` leaves a column as it is.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = courses)]
pub struct CourseChanges {
    pub slug: Option<String>,
    pub title: Option<String>,
    pub summary: Option<String>,
    pub course_type: Option<CourseType>,
    pub category_id: Option<i64>,
    pub level: Option<CourseLevel>,
    pub is_featured: Option<bool>,
    pub updated_at: Option<NaiveDateTime>,
}

/// Filters of a course listing; every field narrows, `None` does not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CourseFilter {
    pub course_type: Option<CourseType>,
    /// Category slug.
    pub category: Option<String>,
    pub status: Option<CourseStatus>,
    pub featured: Option<bool>,
    pub level: Option<CourseLevel>,
}

impl CourseRow {
    /// One page of courses in id order after `after_id`: always one statement.
    pub async fn list(
        conn: &mut DbConn,
        filter: &CourseFilter,
        after_id: Option<i64>,
        limit: i64,
    ) -> QueryResult<Vec<Course>> {
        let rows: Vec<(CourseRow, String, String)> = db_run!(conn => {
            let mut query = courses::table
                .inner_join(categories::table)
                .select((CourseRow::as_select(), categories::slug, categories::name))
                .into_boxed();
            if let Some(kind) = filter.course_type {
                query = query.filter(courses::course_type.eq(kind));
            }
            if let Some(category) = &filter.category {
                query = query.filter(categories::slug.eq(category.clone()));
            }
            if let Some(status) = filter.status {
                query = query.filter(courses::status.eq(status));
            }
            if let Some(featured) = filter.featured {
                query = query.filter(courses::is_featured.eq(featured));
            }
            if let Some(level) = filter.level {
                query = query.filter(courses::level.eq(level));
            }
            if let Some(after) = after_id {
                query = query.filter(courses::id.gt(after));
            }
            query.order(courses::id.asc()).limit(limit).load(conn).await
        })?;
        Ok(rows.into_iter().map(Course::from).collect())
    }

    pub async fn find(conn: &mut DbConn, id: i64) -> QueryResult<Option<Course>> {
        let row: Option<(CourseRow, String, String)> = db_run!(conn => courses::table
            .inner_join(categories::table)
            .filter(courses::id.eq(id))
            .select((CourseRow::as_select(), categories::slug, categories::name))
            .first(conn)
            .await
            .optional())?;
        Ok(row.map(Course::from))
    }

    pub async fn find_by_slug(conn: &mut DbConn, slug: &str) -> QueryResult<Option<Course>> {
        let row: Option<(CourseRow, String, String)> = db_run!(conn => courses::table
            .inner_join(categories::table)
            .filter(courses::slug.eq(slug))
            .select((CourseRow::as_select(), categories::slug, categories::name))
            .first(conn)
            .await
            .optional())?;
        Ok(row.map(Course::from))
    }

    /// Many courses by id in one statement (`= ANY($1)` on Postgres, `IN (…)` on SQLite).
    pub async fn find_many(conn: &mut DbConn, ids: &[i64]) -> QueryResult<Vec<Course>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(CourseRow, String, String)> = db_run!(conn => courses::table
            .inner_join(categories::table)
            .filter(courses::id.eq_any(ids))
            .select((CourseRow::as_select(), categories::slug, categories::name))
            .load(conn)
            .await)?;
        Ok(rows.into_iter().map(Course::from).collect())
    }

    pub async fn insert(conn: &mut DbConn, new: &NewCourse) -> QueryResult<CourseRow> {
        db_run!(conn => diesel::insert_into(courses::table)
            .values(new)
            .returning(CourseRow::as_returning())
            .get_result(conn)
            .await)
    }

    /// Applies `changes`; `None` when there is no such course.
    pub async fn update(
        conn: &mut DbConn,
        id: i64,
        changes: &CourseChanges,
    ) -> QueryResult<Option<CourseRow>> {
        db_run!(conn => diesel::update(courses::table.find(id))
            .set(changes)
            .returning(CourseRow::as_returning())
            .get_result(conn)
            .await
            .optional())
    }

    /// Moves a course to `to` only when its current status is one of `from`, in one statement,
    /// so two concurrent transitions cannot both pass a check made before the write.
    /// `None`: no such course, or its status was not in `from`.
    pub async fn transition(
        conn: &mut DbConn,
        id: i64,
        from: &[CourseStatus],
        to: CourseStatus,
        now: NaiveDateTime,
    ) -> QueryResult<Option<CourseRow>> {
        let published_at = if to == CourseStatus::Published {
            Some(now)
        } else {
            None
        };
        db_run!(conn => diesel::update(
                courses::table
                    .filter(courses::id.eq(id))
                    .filter(courses::status.eq_any(from)),
            )
            .set((
                courses::status.eq(to),
                courses::updated_at.eq(now),
                courses::published_at.eq(coalesce(courses::published_at, published_at)),
            ))
            .returning(CourseRow::as_returning())
            .get_result(conn)
            .await
            .optional())
    }

    /// Inserts many courses; returns `(id, slug)` of the rows inserted, in id order. (Diesel
    /// cannot combine a multi-row insert with RETURNING on SQLite, so ids are read back by slug.)
    pub async fn insert_batch(
        conn: &mut DbConn,
        batch: &[NewCourse],
    ) -> QueryResult<Vec<(i64, String)>> {
        let mut inserted = Vec::with_capacity(batch.len());
        // Chunks keep each statement under SQLite's bind-variable limit.
        for chunk in batch.chunks(1_000) {
            learnhub_db::db_insert_many!(conn, courses::table, chunk.to_vec())?;
            let slugs: Vec<String> = chunk.iter().map(|c| c.slug.clone()).collect();
            let rows: Vec<(i64, String)> = db_run!(conn => courses::table
                .filter(courses::slug.eq_any(&slugs))
                .select((courses::id, courses::slug))
                .order(courses::id.asc())
                .load(conn)
                .await)?;
            inserted.extend(rows);
        }
        Ok(inserted)
    }
}
