//! perf-report: seeds a chosen scale into databases of its own, measures the original Phase 9.1
//! report's scenarios through the gateway in three configurations (no indexes and no cache;
//! indexes; indexes + cache), and load-tests the catalog page against the gateway's floor.
pub mod cli;
pub mod enrollment_stats;
pub mod fairness;
pub mod harness;
pub mod load;
pub mod machine;
mod observability;
pub mod pg;
pub mod platform;
pub mod prepare;
pub mod report;
pub mod results;
pub mod run;
pub mod scale;
pub mod staleness;
pub mod workload;
