//! One module per table: the row types and every query that reads or writes that table.
pub mod enrollment;
pub mod exercise_submission;
pub mod lesson_progress;
pub mod user;

/// Rows per multi-row INSERT: keeps every statement under SQLite's and Postgres's bind limits
/// (at most 7 columns × 1,000 rows = 7,000 binds; SQLite allows 32,766, Postgres 65,535).
const INSERT_CHUNK: usize = 1_000;
