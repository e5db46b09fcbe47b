//! `categories`: the subjects courses are filed under, with published-course counts.
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use learnhub_db::{DbConn, db_run};

use crate::{domain::CourseType, schema::categories};

/// A category as the catalog reads it (its `created_at` is written, never shown).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = categories)]
pub struct Category {
    pub id: i64,
    pub slug: String,
    pub name: String,
}

#[derive(Insertable)]
#[diesel(table_name = categories)]
pub struct NewCategory<'a> {
    pub slug: &'a str,
    pub name: &'a str,
    pub created_at: NaiveDateTime,
}

/// One row of the published-course census: a category and a course type with its count.
#[derive(Debug, Clone, QueryableByName)]
pub struct CategoryTypeCount {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub id: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub slug: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub name: String,
    /// `None` for a category no course was ever counted in (the LEFT JOIN found no row).
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub course_type: Option<CourseType>,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub published: i64,
}

/// A category with its number of published courses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryCount {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub course_count: i64,
}

/// Published courses per category and per type, from one statement over the counts table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Census {
    pub categories: Vec<CategoryCount>,
    pub per_type: Vec<(CourseType, i64)>,
}

// Reads `course_counts` (a row per category and type, kept exact by triggers on `courses`; see
// docs/census.md), so the cost follows the number of categories, not of courses. Categories with
// no counted course appear with a count of 0 (LEFT JOIN). No binds: the same text on both backends.
const CENSUS_SQL: &str = "SELECT cat.id, cat.slug, cat.name, cc.course_type, \
     COALESCE(cc.published, 0) AS published \
     FROM categories cat \
     LEFT JOIN course_counts cc ON cc.category_id = cat.id \
     ORDER BY cat.name, cat.id, cc.course_type";

impl Category {
    pub async fn find_by_slug(conn: &mut DbConn, slug: &str) -> QueryResult<Option<Self>> {
        db_run!(conn => categories::table
            .filter(categories::slug.eq(slug))
            .select(Self::as_select())
            .first(conn)
            .await
            .optional())
    }

    pub async fn create(conn: &mut DbConn, new: &NewCategory<'_>) -> QueryResult<Self> {
        db_run!(conn => diesel::insert_into(categories::table)
            .values(new)
            .returning(Self::as_returning())
            .get_result(conn)
            .await)
    }

    /// One statement: every category with its published courses, split by type, read from
    /// `course_counts` (a few rows whatever the number of courses).
    pub async fn census(conn: &mut DbConn) -> QueryResult<Census> {
        let rows: Vec<CategoryTypeCount> =
            db_run!(conn => diesel::sql_query(CENSUS_SQL).load(conn).await)?;
        Ok(Census::from_rows(rows))
    }
}

impl Census {
    fn from_rows(rows: Vec<CategoryTypeCount>) -> Self {
        let mut census = Census::default();
        for course_type in CourseType::ALL {
            census.per_type.push((*course_type, 0));
        }
        for row in rows {
            if let Some(kind) = row.course_type
                && let Some(entry) = census.per_type.iter_mut().find(|(t, _)| *t == kind)
            {
                entry.1 += row.published;
            }
            match census.categories.last_mut() {
                Some(last) if last.id == row.id => last.course_count += row.published,
                _ => census.categories.push(CategoryCount {
                    id: row.id,
                    slug: row.slug,
                    name: row.name,
                    course_count: row.published,
                }),
            }
        }
        census
    }
}
