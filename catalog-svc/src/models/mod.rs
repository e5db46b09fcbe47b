//! One module per table: the row types and every query that reads or writes that table.
pub mod category;
pub mod course;
pub mod exercise;
pub mod lesson;
