//! Index audit of the catalog, on Postgres and SQLite, at a size where plans mean something
//! (3,000 seeded courses, ≈16k lessons, ≈25k exercises, then ANALYZE):
//!
//! - every foreign-key column (read from the database) leads some index;
//! - each hot query in [`HOT_QUERIES`] is served by its index, with a condition on the index's
//!   leading column, and no table of courses, lessons or exercises is scanned whole;
//! - no index's columns are a prefix of another index's on the same table (read from
//!   `pg_indexes` / `sqlite_master`);
//! - every index the migrations create, unique constraints included, serves some hot query
//!   (primary keys are exempt: every table has one, and point reads by id use it).
//!
//! The SQL is what the service runs: each hot query is captured by calling its RPC and reading
//! the statement back from the query profiler. Bind values are inlined as representative literals
//! (chosen by the column each placeholder is compared with) before `EXPLAIN`.
//!
//! SQLite: `EXPLAIN QUERY PLAN` with its defaults after ANALYZE must name the expected index,
//! searched on its leading column, and scan no large table.
//!
//! Postgres: the planner's own plan and the plan with `enable_seqscan = off` are printed
//! (`cargo test -- --nocapture`); the latter must read no large table sequentially (a walk of an
//! index in ORDER BY order under the LIMIT is accepted: that is how a first page is read). The
//! expected index is then checked with `enable_seqscan = off` while it is the only index of its
//! table (the others dropped in a transaction that is rolled back): the plan must name it with a
//! condition on its leading column. Why: with the seeded distribution (85% of courses published,
//! two types, a quarter featured, eight categories) the catalog page's filters are unselective,
//! so Postgres reads a first page by walking `courses_pkey` in id order and stopping at the
//! LIMIT — a good plan, which leaves the composite indexes to the selective cases (drafts, a
//! small category). Isolating the index asks what the audit must know, whether the index serves
//! the query's filter and order, without depending on which of two good plans is cheaper today.
//! The census reads `course_counts` (a row per category and type, kept by triggers) and
//! `categories`: a few rows, so it names no index, and must read no large table.
use std::collections::{BTreeMap, BTreeSet};

use diesel::{
    QueryableByName,
    sql_types::{Bool, Text},
};
use diesel_async::SimpleAsyncConnection;
use learnhub_db::{Backend, DbConn, db_run};
use learnhub_proto::catalog::v1 as pb;

use crate::{
    helpers::{TestApp, spawn_app},
    on_both_backends,
};

on_both_backends!(catalog_indexes_serve_the_hot_queries);

const COURSES: u64 = 3_000;
const TABLES: &[&str] = &[
    "categories",
    "courses",
    "lessons",
    "exercises",
    "course_counts",
];
/// Tables too large to read whole on a hot path.
const LARGE: &[&str] = &["courses", "lessons", "exercises"];

/// How a hot query is produced: the RPC that runs it.
#[derive(Debug, Clone, Copy)]
enum Call {
    ListByTypeAndStatus,
    ListByCategoryAndStatus,
    Summary,
    Categories,
    CourseBySlug,
    CourseById,
    ListExercises,
}

/// One hot query: how to make the service run it, how to recognise its SQL among what that RPC
/// ran, and the index (table, leading columns) that must serve it.
struct HotQuery {
    name: &'static str,
    call: Call,
    /// A fragment of its SQL (double quotes; SQLite's backquotes are read as such).
    contains: &'static str,
    indexes: &'static [(&'static str, &'static [&'static str])],
}

/// The catalog's hot queries: what the catalog page, course pages and exercises read.
const HOT_QUERIES: &[HotQuery] = &[
    HotQuery {
        name: "course list by status + type (ListCourses, the catalog page)",
        call: Call::ListByTypeAndStatus,
        contains: r#"FROM ("courses" INNER JOIN "categories""#,
        indexes: &[("courses", &["status", "course_type", "id"])],
    },
    HotQuery {
        name: "course list by category + status (ListCourses, the catalog page)",
        call: Call::ListByCategoryAndStatus,
        contains: r#"FROM ("courses" INNER JOIN "categories""#,
        indexes: &[
            ("courses", &["category_id", "status", "id"]),
            ("categories", &["slug"]),
        ],
    },
    HotQuery {
        name: "featured courses per type (GetCatalogSummary)",
        call: Call::Summary,
        contains: r#""courses"."is_featured" = "#,
        indexes: &[("courses", &["is_featured", "status", "course_type", "id"])],
    },
    HotQuery {
        name: "census: published counts per type and categories with counts \
               (GetCatalogSummary, ListCategories)",
        call: Call::Categories,
        contains: "FROM categories cat LEFT JOIN course_counts",
        indexes: &[],
    },
    HotQuery {
        name: "course by slug (GetCourse)",
        call: Call::CourseBySlug,
        contains: r#"WHERE ("courses"."slug" = "#,
        indexes: &[("courses", &["slug"])],
    },
    HotQuery {
        name: "course by id (GetCourse)",
        call: Call::CourseById,
        contains: r#"WHERE ("courses"."id" = "#,
        indexes: &[("courses", &["id"])],
    },
    HotQuery {
        name: "lessons of a course in position order (GetCourse)",
        call: Call::CourseById,
        contains: r#"FROM "lessons" WHERE ("lessons"."course_id" = "#,
        indexes: &[("lessons", &["course_id", "position"])],
    },
    HotQuery {
        name: "exercises of a lesson (ListExercises)",
        call: Call::ListExercises,
        contains: r#"FROM "exercises" WHERE ("exercises"."lesson_id" = "#,
        indexes: &[("exercises", &["lesson_id", "id"])],
    },
];

/// Values the placeholders of the captured statements get for EXPLAIN.
struct Sample {
    course_id: i64,
    course_slug: String,
    lesson_id: i64,
}

#[derive(QueryableByName)]
struct PgIndexRow {
    #[diesel(sql_type = Text)]
    tablename: String,
    #[diesel(sql_type = Text)]
    indexname: String,
    #[diesel(sql_type = Text)]
    indexdef: String,
    #[diesel(sql_type = Bool)]
    is_primary: bool,
    #[diesel(sql_type = Bool)]
    is_constraint: bool,
}

#[derive(QueryableByName)]
struct NameRow {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct SqliteIndexRow {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    tbl_name: String,
}

#[derive(QueryableByName)]
struct ForeignKeyRow {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
}

#[derive(QueryableByName)]
struct SqlitePlanRow {
    #[diesel(sql_type = Text)]
    detail: String,
}

#[derive(QueryableByName)]
struct PgPlanRow {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    plan: String,
}

/// One index as the database describes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Index {
    table: String,
    name: String,
    columns: Vec<String>,
    primary: bool,
    /// Backs a PRIMARY KEY or UNIQUE constraint (dropped with the constraint, not DROP INDEX).
    constraint: bool,
}

/// What a plan reads: the indexes it searches with a condition on their leading column.
#[derive(Debug, Default)]
struct PlanUse {
    indexes: BTreeSet<String>,
    summary: Vec<String>,
}

fn sql_of(sql: &str) -> String {
    sql.replace('`', "\"")
}

async fn run_call(app: &TestApp, call: Call, sample: &Sample) {
    let mut c = app.client.clone();
    match call {
        Call::ListByTypeAndStatus => {
            c.list_courses(pb::ListCoursesRequest {
                course_type: pb::CourseType::Python as i32,
                status: pb::CourseStatus::Published as i32,
                ..Default::default()
            })
            .await
            .unwrap();
        }
        Call::ListByCategoryAndStatus => {
            c.list_courses(pb::ListCoursesRequest {
                category: "sql-fundamentals".into(),
                status: pb::CourseStatus::Published as i32,
                ..Default::default()
            })
            .await
            .unwrap();
        }
        Call::Summary => {
            c.get_catalog_summary(pb::GetCatalogSummaryRequest::default())
                .await
                .unwrap();
        }
        Call::Categories => {
            c.list_categories(pb::ListCategoriesRequest {})
                .await
                .unwrap();
        }
        Call::CourseBySlug => {
            c.get_course(pb::GetCourseRequest {
                key: Some(pb::get_course_request::Key::Slug(
                    sample.course_slug.clone(),
                )),
            })
            .await
            .unwrap();
        }
        Call::CourseById => {
            c.get_course(pb::GetCourseRequest {
                key: Some(pb::get_course_request::Key::Id(sample.course_id)),
            })
            .await
            .unwrap();
        }
        Call::ListExercises => {
            c.list_exercises(pb::ListExercisesRequest {
                lesson_id: sample.lesson_id,
            })
            .await
            .unwrap();
        }
    }
}

/// The SQL of `query`, as the service ran it (read back from the profiler).
async fn capture(app: &TestApp, query: &HotQuery, sample: &Sample) -> String {
    app.db.profiler().reset();
    run_call(app, query.call, sample).await;
    let found: Vec<String> = app
        .db
        .profiler()
        .statements()
        .into_keys()
        .filter(|sql| sql_of(sql).contains(query.contains))
        .collect();
    assert_eq!(found.len(), 1, "{}: {found:#?}", query.name);
    found.into_iter().next().unwrap_or_default()
}

/// `sql` with each placeholder (`$n` or `?`) replaced by a literal for the column it is compared
/// with; an unknown column fails the test, so a new query shape is looked at, not guessed.
fn inline_binds(sql: &str, backend: Backend, sample: &Sample) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find(['$', '?']) {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let digits = from[1..].chars().take_while(char::is_ascii_digit).count();
        let placeholder_len = if from.starts_with('$') { 1 + digits } else { 1 };
        out.push_str(&literal(&out, backend, sample, sql));
        rest = &from[placeholder_len..];
    }
    out.push_str(rest);
    out
}

/// The literal for a placeholder that follows `before`.
fn literal(before: &str, backend: Backend, sample: &Sample, sql: &str) -> String {
    let before = before.trim_end();
    if before.ends_with("LIMIT") {
        return "21".into();
    }
    let Some(compared) = before.strip_suffix('=') else {
        panic!("no literal for a placeholder after {before:?} in {sql}");
    };
    // `"table"."column"` (or with backquotes) right before the `=`.
    let quoted: Vec<&str> = compared
        .trim_end()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .trim_start_matches('(')
        .split('.')
        .map(|part| part.trim_matches(['"', '`']))
        .collect();
    let (table, column) = match quoted.as_slice() {
        [table, column] => (*table, *column),
        [column] => ("", *column),
        _ => panic!("no column before a placeholder in {sql}"),
    };
    match (table, column) {
        (_, "course_type") => "'python'".into(),
        (_, "status") => "'published'".into(),
        (_, "is_featured") => match backend {
            Backend::Postgres => "TRUE".into(),
            Backend::Sqlite => "1".into(),
        },
        ("categories", "slug") => "'sql-fundamentals'".into(),
        ("courses", "slug") => format!("'{}'", sample.course_slug),
        ("courses", "id") | ("lessons", "course_id") => sample.course_id.to_string(),
        ("lessons", "id") | ("exercises", "lesson_id") => sample.lesson_id.to_string(),
        _ => panic!("no representative value for {table}.{column} in {sql}"),
    }
}

async fn load<T>(conn: &mut DbConn, sql: &str) -> Vec<T>
where
    T: QueryableByName<diesel::pg::Pg> + QueryableByName<diesel::sqlite::Sqlite> + Send + 'static,
{
    use diesel_async::RunQueryDsl;
    db_run!(conn => diesel::sql_query(sql).load::<T>(conn).await)
        .unwrap_or_else(|err| panic!("{sql}: {err}"))
}

async fn indexes(conn: &mut DbConn, backend: Backend) -> Vec<Index> {
    let tables = TABLES
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut found = Vec::new();
    match backend {
        Backend::Postgres => {
            let sql = format!(
                "SELECT tablename::text AS tablename, indexname::text AS indexname, indexdef, \
                 EXISTS (SELECT 1 FROM pg_constraint c \
                         WHERE c.conname = indexname AND c.contype = 'p') AS is_primary, \
                 EXISTS (SELECT 1 FROM pg_constraint c \
                         WHERE c.conname = indexname AND c.contype IN ('p', 'u')) AS is_constraint \
                 FROM pg_indexes WHERE schemaname = 'public' AND tablename IN ({tables})"
            );
            for row in load::<PgIndexRow>(conn, &sql).await {
                // `CREATE [UNIQUE] INDEX name ON public.t USING btree (a, b)`
                let list = row
                    .indexdef
                    .rsplit_once('(')
                    .and_then(|(_, list)| list.strip_suffix(')'))
                    .unwrap_or_else(|| panic!("columns of {}", row.indexdef));
                found.push(Index {
                    table: row.tablename,
                    name: row.indexname,
                    columns: list
                        .split(", ")
                        .map(|c| c.trim_matches('"').to_owned())
                        .collect(),
                    primary: row.is_primary,
                    constraint: row.is_constraint,
                });
            }
        }
        Backend::Sqlite => {
            let sql = format!(
                "SELECT name, tbl_name FROM sqlite_master \
                 WHERE type = 'index' AND tbl_name IN ({tables})"
            );
            for row in load::<SqliteIndexRow>(conn, &sql).await {
                let columns = load::<NameRow>(
                    conn,
                    &format!(
                        "SELECT name FROM pragma_index_info('{}') ORDER BY seqno",
                        row.name
                    ),
                )
                .await;
                found.push(Index {
                    table: row.tbl_name,
                    constraint: row.name.starts_with("sqlite_autoindex_"),
                    name: row.name,
                    columns: columns.into_iter().map(|c| c.name).collect(),
                    primary: false,
                });
            }
            // A primary key is not an index in sqlite_master: `INTEGER PRIMARY KEY` is the rowid,
            // and a WITHOUT ROWID table (`course_counts`) is stored in its primary key's order.
            for table in TABLES {
                let columns: Vec<String> = load::<NameRow>(
                    conn,
                    &format!(
                        "SELECT name FROM pragma_table_info('{table}') WHERE pk > 0 ORDER BY pk"
                    ),
                )
                .await
                .into_iter()
                .map(|c| c.name)
                .collect();
                let name = if columns == ["id"] {
                    format!("{table} INTEGER PRIMARY KEY")
                } else {
                    format!("{table} PRIMARY KEY")
                };
                found.push(Index {
                    table: (*table).to_owned(),
                    name,
                    columns,
                    primary: true,
                    constraint: true,
                });
            }
        }
    }
    found.sort();
    found
}

async fn foreign_keys(conn: &mut DbConn, backend: Backend) -> BTreeSet<(String, String)> {
    let rows = match backend {
        Backend::Postgres => {
            load::<ForeignKeyRow>(
                conn,
                "SELECT cl.relname::text AS table_name, a.attname::text AS column_name \
                 FROM pg_constraint c \
                 JOIN pg_class cl ON cl.oid = c.conrelid \
                 JOIN pg_namespace n ON n.oid = cl.relnamespace \
                 JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey) \
                 WHERE c.contype = 'f' AND n.nspname = 'public'",
            )
            .await
        }
        Backend::Sqlite => {
            let mut rows = Vec::new();
            for table in TABLES {
                let sql = format!(
                    "SELECT '{table}' AS table_name, \"from\" AS column_name \
                     FROM pragma_foreign_key_list('{table}')"
                );
                rows.extend(load::<ForeignKeyRow>(conn, &sql).await);
            }
            rows
        }
    };
    rows.into_iter()
        .map(|row| (row.table_name, row.column_name))
        .collect()
}

/// Table names and the aliases a statement gives them (`courses c`).
fn aliases(sql: &str) -> BTreeMap<String, String> {
    const NOT_ALIASES: &[&str] = &[
        "ON", "WHERE", "INNER", "LEFT", "JOIN", "ORDER", "GROUP", "LIMIT", "AS", "SET", "USING",
    ];
    let words: Vec<&str> = sql
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
        .filter(|w| !w.is_empty())
        .map(|w| w.trim_matches(['"', '`']))
        .collect();
    let mut map: BTreeMap<String, String> = TABLES
        .iter()
        .map(|t| ((*t).to_owned(), (*t).to_owned()))
        .collect();
    for pair in words.windows(2) {
        if TABLES.contains(&pair[0])
            && !NOT_ALIASES.contains(&pair[1].to_uppercase().as_str())
            && pair[1]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !pair[1].contains('.')
        {
            map.insert(pair[1].to_owned(), pair[0].to_owned());
        }
    }
    map
}

/// A SQLite plan's index use; panics on a whole scan of a large table.
fn sqlite_plan(sql: &str, plan: &[String], by_name: &BTreeMap<String, Index>) -> PlanUse {
    let aliases = aliases(sql);
    let mut used = PlanUse::default();
    for line in plan {
        used.summary.push(line.clone());
        let words: Vec<&str> = line.split_whitespace().collect();
        let (kind, target) = match words.as_slice() {
            [kind @ ("SCAN" | "SEARCH"), target, ..] => (*kind, *target),
            _ => continue,
        };
        let table = aliases.get(target).map_or(target, String::as_str);
        assert!(
            !(kind == "SCAN" && LARGE.contains(&table)),
            "whole scan `{line}` in {sql}\nplan: {plan:#?}"
        );
        if kind != "SEARCH" {
            continue;
        }
        if line.contains("USING INTEGER PRIMARY KEY") {
            used.indexes.insert(format!("{table} INTEGER PRIMARY KEY"));
        } else if line.contains("USING PRIMARY KEY") {
            used.indexes.insert(format!("{table} PRIMARY KEY"));
        } else if let Some(at) = line.find("INDEX ") {
            let name = line[at + 6..].split_whitespace().next().unwrap_or_default();
            let index = by_name
                .get(name)
                .unwrap_or_else(|| panic!("unknown index {name} in `{line}`"));
            // `SEARCH t USING INDEX i (a=? AND …)`: the condition starts at the leading column.
            let condition = line.split_once('(').map_or("", |(_, c)| c);
            assert!(
                condition.starts_with(&format!("{}=", index.columns[0]))
                    || condition.starts_with(&format!("{}>", index.columns[0]))
                    || condition.starts_with(&format!("{}<", index.columns[0])),
                "`{line}` does not search on the leading column of {name} in {sql}"
            );
            used.indexes.insert(name.to_owned());
        }
    }
    used
}

/// One node of a Postgres text plan.
#[derive(Debug, Default)]
struct PgNode {
    description: String,
    relation: Option<String>,
    index: Option<String>,
    condition: String,
}

/// Parses `EXPLAIN`'s text: node lines (the first, then `->  …`) and their `Index Cond:` lines.
fn pg_nodes(lines: &[String]) -> Vec<PgNode> {
    let mut nodes: Vec<PgNode> = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let text = line.trim_start();
        if let Some(condition) = text.strip_prefix("Index Cond: ") {
            if let Some(node) = nodes.last_mut() {
                node.condition = condition.to_owned();
            }
            continue;
        }
        let Some(text) = text.strip_prefix("->  ").or((n == 0).then_some(text)) else {
            continue;
        };
        let description = text.split("  (cost=").next().unwrap_or(text).to_owned();
        let word_after = |marker: &str| {
            description
                .split_once(marker)
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .map(str::to_owned)
        };
        let (index, relation) = if description.starts_with("Bitmap Index Scan on ") {
            (word_after(" on "), None)
        } else {
            (word_after(" using "), word_after(" on "))
        };
        nodes.push(PgNode {
            description,
            relation,
            index,
            condition: String::new(),
        });
    }
    nodes
}

/// What a Postgres plan must show for the large tables it reads (never a sequential scan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// The planner's own plan: through an index, or walked in index order under a LIMIT (a
    /// top-N read, as a first page is).
    Planner,
    /// Each index read has a condition on the index's leading column.
    Leading,
}

/// A Postgres plan's index use, checked as `check` says.
fn pg_plan(sql: &str, plan: &[String], by_name: &BTreeMap<String, Index>, check: Check) -> PlanUse {
    let mut used = PlanUse::default();
    let nodes = pg_nodes(plan);
    let limited = nodes
        .first()
        .is_some_and(|root| root.description.starts_with("Limit"));
    for node in nodes {
        let relation = node.relation.as_deref().unwrap_or_default();
        assert!(
            !(node.description.starts_with("Seq Scan") && LARGE.contains(&relation)),
            "sequential scan of {relation} in {sql}\nplan: {plan:#?}"
        );
        if let Some(name) = &node.index {
            let index = by_name
                .get(name)
                .unwrap_or_else(|| panic!("unknown index {name} in {plan:#?}"));
            let leading = &index.columns[0];
            let on_leading = [" = ", " > ", " < "]
                .iter()
                .any(|op| node.condition.contains(&format!("{leading}{op}")));
            let qualifies = match check {
                Check::Planner => on_leading || limited,
                Check::Leading => on_leading,
            };
            if LARGE.contains(&index.table.as_str()) {
                assert!(
                    qualifies,
                    "{} without a condition on {leading} in {sql}\nplan: {plan:#?}",
                    node.description
                );
            }
            if on_leading {
                used.indexes.insert(name.clone());
            }
            used.summary
                .push(format!("{} ({})", node.description, node.condition));
        } else {
            used.summary.push(node.description);
        }
    }
    used
}

async fn pg_explain(conn: &mut DbConn, sql: &str) -> Vec<String> {
    let plan: Vec<PgPlanRow> = load(conn, &format!("EXPLAIN {sql}")).await;
    plan.into_iter().map(|row| row.plan).collect()
}

/// The plan of `sql` when the query's expected indexes are the only indexes of their tables and
/// sequential scans are off: whether those indexes can serve it. The other indexes are dropped
/// inside a transaction that is rolled back.
async fn pg_isolated(
    conn: &mut DbConn,
    query: &HotQuery,
    sql: &str,
    all: &[Index],
    by_name: &BTreeMap<String, Index>,
) -> PlanUse {
    let expected = |i: &Index| {
        query
            .indexes
            .iter()
            .any(|(table, columns)| i.table == *table && i.columns == *columns)
    };
    let mut ddl = vec![
        "BEGIN".to_owned(),
        "SET LOCAL enable_seqscan = off".to_owned(),
    ];
    for index in all {
        let covered = query.indexes.iter().any(|(table, _)| index.table == *table);
        if covered && !expected(index) {
            ddl.push(if index.constraint {
                format!(
                    "ALTER TABLE {} DROP CONSTRAINT {} CASCADE",
                    index.table, index.name
                )
            } else {
                format!("DROP INDEX {}", index.name)
            });
        }
    }
    conn_execute(conn, &ddl.join("; ")).await;
    let plan = pg_explain(conn, sql).await;
    conn_execute(conn, "ROLLBACK").await;
    pg_plan(sql, &plan, by_name, Check::Leading)
}

async fn conn_execute(conn: &mut DbConn, sql: &str) {
    db_run!(conn => conn.batch_execute(sql).await).unwrap_or_else(|err| panic!("{sql}: {err}"));
}

async fn catalog_indexes_serve_the_hot_queries(backend: Backend) {
    let app = spawn_app(backend).await;
    let seeded = app.seed(COURSES).await;
    assert!(
        seeded.lessons > 10_000 && seeded.exercises > 10_000,
        "{seeded:?}"
    );
    let mut conn = app.db.conn().await.unwrap();
    conn_execute(&mut conn, "ANALYZE").await;

    let course = app
        .client
        .clone()
        .get_course(pb::GetCourseRequest {
            key: Some(pb::get_course_request::Key::Id(1_234)),
        })
        .await
        .unwrap()
        .into_inner();
    let sample = Sample {
        course_id: 1_234,
        course_slug: course.course.unwrap().slug,
        lesson_id: course.lessons[0].id,
    };

    let all = indexes(&mut conn, backend).await;
    let by_name: BTreeMap<String, Index> =
        all.iter().map(|i| (i.name.clone(), i.clone())).collect();

    // Every foreign key leads an index.
    let fks = foreign_keys(&mut conn, backend).await;
    let expected: BTreeSet<(String, String)> = [
        ("courses", "category_id"),
        ("lessons", "course_id"),
        ("exercises", "lesson_id"),
    ]
    .into_iter()
    .map(|(t, c)| (t.to_owned(), c.to_owned()))
    .collect();
    assert_eq!(fks, expected, "the catalog's foreign keys");
    for (table, column) in &fks {
        assert!(
            all.iter()
                .any(|i| &i.table == table && i.columns.first() == Some(column)),
            "no index leads with the foreign key {table}.{column}: {all:#?}"
        );
    }

    // No index is a prefix of another on the same table.
    for a in &all {
        for b in &all {
            if a.name != b.name && a.table == b.table {
                assert!(
                    !b.columns.starts_with(&a.columns),
                    "{} ({:?}) is a prefix of {} ({:?})",
                    a.name,
                    a.columns,
                    b.name,
                    b.columns
                );
            }
        }
    }

    // Each hot query is served by its index.
    let mut used = BTreeSet::new();
    println!("catalog index audit on {backend:?}:");
    for query in HOT_QUERIES {
        let sql = capture(&app, query, &sample).await;
        let explained = inline_binds(&sql, backend, &sample);
        println!("  {}", query.name);
        let plan = match backend {
            Backend::Sqlite => {
                let plan: Vec<SqlitePlanRow> =
                    load(&mut conn, &format!("EXPLAIN QUERY PLAN {explained}")).await;
                let lines: Vec<String> = plan.into_iter().map(|row| row.detail).collect();
                sqlite_plan(&explained, &lines, &by_name)
            }
            Backend::Postgres => {
                let free = pg_nodes(&pg_explain(&mut conn, &explained).await);
                let free: Vec<&str> = free.iter().map(|n| n.description.as_str()).collect();
                println!("    planner's choice: {}", free.join(" / "));
                conn_execute(&mut conn, "SET enable_seqscan = off").await;
                let real = pg_explain(&mut conn, &explained).await;
                conn_execute(&mut conn, "RESET enable_seqscan").await;
                let real = pg_plan(&explained, &real, &by_name, Check::Planner);
                println!("    sequential scans off: {}", real.summary.join(" / "));
                pg_isolated(&mut conn, query, &explained, &all, &by_name).await
            }
        };
        println!("    audited: {}", plan.summary.join(" / "));
        for (table, columns) in query.indexes {
            let served = plan.indexes.iter().any(|name| {
                by_name
                    .get(name)
                    .is_some_and(|i| i.table == *table && i.columns == *columns)
            });
            assert!(
                served,
                "{}: no index on {table} {columns:?} in the plan {:?}\nSQL: {explained}",
                query.name, plan.summary
            );
        }
        used.extend(plan.indexes);
    }

    // Every index the migrations create serves some hot query.
    let unused: Vec<&Index> = all
        .iter()
        .filter(|i| !i.primary && !used.contains(&i.name))
        .collect();
    assert!(unused.is_empty(), "indexes no hot query uses: {unused:#?}");
    let explicit = all.iter().filter(|i| !i.primary).count();
    assert_eq!(
        explicit, 7,
        "4 performance indexes + 3 unique constraints: {all:#?}"
    );
}
