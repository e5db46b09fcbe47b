//! Diesel table definitions, the same for Postgres and SQLite.

diesel::table! {
    categories (id) {
        id -> BigInt,
        slug -> Text,
        name -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    courses (id) {
        id -> BigInt,
        slug -> Text,
        title -> Text,
        summary -> Text,
        course_type -> Text,
        category_id -> BigInt,
        level -> Text,
        status -> Text,
        is_featured -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        published_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    lessons (id) {
        id -> BigInt,
        course_id -> BigInt,
        position -> Integer,
        title -> Text,
        body -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    exercises (id) {
        id -> BigInt,
        lesson_id -> BigInt,
        title -> Text,
        prompt -> Text,
        starter_code -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    /// Cache invalidations committed with their writes, until cache-svc acknowledges them.
    cache_outbox (id) {
        id -> BigInt,
        pattern -> Nullable<Text>,
        keys -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    /// Published courses per category and type, kept by triggers on `courses` (docs/census.md).
    course_counts (category_id, course_type) {
        category_id -> BigInt,
        course_type -> Text,
        published -> BigInt,
    }
}

diesel::joinable!(courses -> categories (category_id));
diesel::joinable!(lessons -> courses (course_id));
diesel::joinable!(exercises -> lessons (lesson_id));
diesel::allow_tables_to_appear_in_same_query!(categories, courses, lessons, exercises);
