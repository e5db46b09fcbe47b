//! What `perf-report run` measures: the configurations compared and each scenario's numbers.
//! `run` fills these in and hands them to `report`, which renders them: run → report → results.
use std::{path::PathBuf, time::Duration};

use crate::{harness::Measurement, workload::Scenario};

/// One of the three configurations compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Configuration {
    NoIndexesNoCache,
    Indexes,
    IndexesCache,
}

impl Configuration {
    pub const ALL: [Configuration; 3] = [
        Configuration::NoIndexesNoCache,
        Configuration::Indexes,
        Configuration::IndexesCache,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::NoIndexesNoCache => "(a) no performance indexes, no cache",
            Self::Indexes => "(b) performance indexes",
            Self::IndexesCache => "(c) performance indexes + cache (Redis, warm)",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Self::NoIndexesNoCache => "a",
            Self::Indexes => "b",
            Self::IndexesCache => "c",
        }
    }

    /// Whether the performance indexes are applied.
    pub fn indexes(self) -> bool {
        self != Self::NoIndexesNoCache
    }

    /// Whether cache-svc (on Redis) runs and the services use it.
    pub fn cache(self) -> bool {
        self == Self::IndexesCache
    }
}

/// How hard and how long each measurement runs.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub concurrency: usize,
    pub connections: usize,
    pub requests: u64,
    pub warmup: u64,
    pub max_duration: Duration,
    pub out_dir: PathBuf,
    pub command_line: String,
}

/// One scenario in one configuration.
#[derive(Debug, Clone)]
pub struct ScenarioResult {
    pub scenario: Scenario,
    pub measurement: Measurement,
    pub sql_statements: u64,
    pub sql_time: Duration,
    /// `(hits, misses)` at cache-svc during the measurement, when there is a cache.
    pub cache: Option<(u64, u64)>,
    /// The statements that took the most time during the measurement.
    pub top_statements: Vec<StatementLine>,
}

impl ScenarioResult {
    pub fn hit_rate(&self) -> Option<f64> {
        self.cache.and_then(|(hits, misses)| {
            (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64)
        })
    }

    /// Cache lookups (hits + misses, every caller) per measured call.
    pub fn lookups_per_request(&self) -> Option<f64> {
        self.cache
            .map(|(hits, misses)| (hits + misses) as f64 / self.measurement.requests.max(1) as f64)
    }

    pub fn statements_per_request(&self) -> f64 {
        self.sql_statements as f64 / self.measurement.requests.max(1) as f64
    }
}

/// Every scenario of one configuration.
#[derive(Debug, Clone)]
pub struct ConfigResult {
    pub configuration: Configuration,
    pub scenarios: Vec<ScenarioResult>,
    /// Distinct catalog pages and hot learners the workload drew from.
    pub distinct_pages: usize,
    pub hot_users: usize,
}

impl ConfigResult {
    /// Mean SQL statement time over the configuration's measurements (both services' profilers).
    pub fn average_statement(&self) -> Option<Duration> {
        let count: u64 = self.scenarios.iter().map(|s| s.sql_statements).sum();
        let total: Duration = self.scenarios.iter().map(|s| s.sql_time).sum();
        (count > 0).then(|| total / count as u32)
    }

    pub fn statements(&self) -> u64 {
        self.scenarios.iter().map(|s| s.sql_statements).sum()
    }

    pub fn get(&self, scenario: Scenario) -> Option<&ScenarioResult> {
        self.scenarios.iter().find(|s| s.scenario == scenario)
    }
}

/// One normalised statement's cost, from a profiler.
#[derive(Debug, Clone)]
pub struct StatementLine {
    pub sql: String,
    pub count: u64,
    pub total: Duration,
    pub mean: Duration,
    pub median: Duration,
    pub p99: Duration,
}
