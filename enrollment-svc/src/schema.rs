//! Diesel table definitions, the same for Postgres and SQLite.

diesel::table! {
    users (id) {
        id -> BigInt,
        email -> Text,
        email_normalized -> Text,
        display_name -> Text,
        role -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    enrollments (id) {
        id -> BigInt,
        user_id -> BigInt,
        course_id -> BigInt,
        status -> Text,
        enrolled_at -> Timestamp,
        completed_at -> Nullable<Timestamp>,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    lesson_progress (id) {
        id -> BigInt,
        enrollment_id -> BigInt,
        lesson_id -> BigInt,
        completed -> Bool,
        completed_at -> Nullable<Timestamp>,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    exercise_submissions (id) {
        id -> BigInt,
        user_id -> BigInt,
        exercise_id -> BigInt,
        code -> Text,
        passed -> Bool,
        score -> Integer,
        submitted_at -> Timestamp,
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

diesel::joinable!(enrollments -> users (user_id));
diesel::joinable!(lesson_progress -> enrollments (enrollment_id));
diesel::joinable!(exercise_submissions -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(
    users,
    enrollments,
    lesson_progress,
    exercise_submissions
);

diesel::table! {
    /// Per UTC day, maintained by triggers: enrollments, completions, and the version of the
    /// day's learner set (see docs/enrollment-rollup.md).
    enrollment_days (day) {
        day -> Date,
        enrollments -> BigInt,
        completions -> BigInt,
        learners_version -> BigInt,
    }
}

diesel::table! {
    /// One day's learner set as a serialized roaring bitmap, valid while `version` is the day's
    /// `enrollment_days.learners_version`; written by EnrollmentStats, not by triggers.
    learner_day_bitmaps (day) {
        day -> Date,
        version -> BigInt,
        learners -> Binary,
    }
}
