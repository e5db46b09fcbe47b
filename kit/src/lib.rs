//! learnhub's runtime kit: what every service shares to start, serve, log and reach its database.

pub mod client;
pub mod config;
pub mod db;
pub mod page_token;
pub mod profiler;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod testing;
pub mod text_enum;
pub mod time;

pub use db::{Backend, Db, DbConn, DbError};
pub use page_token::PageToken;
pub use profiler::QueryProfiler;
