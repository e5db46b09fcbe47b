//! One module per table: the row types and every query that reads or writes that table.
pub(crate) mod category;
pub mod course;
pub(crate) mod exercise;
pub(crate) mod lesson;
