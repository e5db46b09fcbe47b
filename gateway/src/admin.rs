//! Admin views of the platform's databases: both data services' query-profiler statistics in one
//! answer (`GET /v1/admin/db/stats`, gRPC `GetDbStats`), and its JSON rendering.
use learnhub_proto::{
    catalog::v1::{CourseStatus, ListCoursesRequest, ListCoursesResponse},
    common::v1::{self as common, GetDbStatsRequest, ResetDbStatsRequest},
    gateway::v1::GetDbStatsResponse,
};
use serde::Serialize;

use crate::{
    audit,
    auth::{Caller, Role, require},
    error::Error,
    rest::json::rfc3339,
    state::Gateway,
    upstream::{CATALOG, ENROLLMENT},
};

impl Gateway {
    /// catalog-svc's and enrollment-svc's statistics, asked concurrently. enrollment-svc is left
    /// out (not an error) when the gateway has none configured; a configured one that fails
    /// fails the call, as every other route does.
    pub async fn db_stats(&self, caller: Option<&Caller>) -> Result<GetDbStatsResponse, Error> {
        require(caller, Role::Admin)?;
        let catalog = async {
            let mut client = self.upstreams.catalog();
            let request = self.upstreams.request(GetDbStatsRequest {});
            self.upstreams
                .call(CATALOG, client.get_db_stats(request))
                .await
        };
        let enrollment = async {
            if !self.upstreams.has_enrollment() {
                return Ok(None);
            }
            let mut client = self.upstreams.enrollment()?;
            let request = self.upstreams.request(GetDbStatsRequest {});
            self.upstreams
                .call(ENROLLMENT, client.get_db_stats(request))
                .await
                .map(Some)
        };
        let (catalog, enrollment) = tokio::try_join!(catalog, enrollment)?;
        Ok(GetDbStatsResponse {
            catalog: Some(sorted(catalog)),
            enrollment: enrollment.map(sorted),
        })
    }

    /// Starts both data services' statistics afresh; the services that were reset.
    pub async fn reset_db_stats(
        &self,
        caller: Option<&Caller>,
    ) -> Result<Vec<&'static str>, Error> {
        let admin = require(caller, Role::Admin)?;
        let outcome = self.reset_both().await;
        audit::record(
            admin,
            "db_stats.reset",
            "catalog-svc, enrollment-svc",
            outcome,
        )
    }

    async fn reset_both(&self) -> Result<Vec<&'static str>, Error> {
        let catalog = async {
            let mut client = self.upstreams.catalog();
            let request = self.upstreams.request(ResetDbStatsRequest {});
            self.upstreams
                .call(CATALOG, client.reset_db_stats(request))
                .await
                .map(|_| Some(CATALOG))
        };
        let enrollment = async {
            if !self.upstreams.has_enrollment() {
                return Ok(None);
            }
            let mut client = self.upstreams.enrollment()?;
            let request = self.upstreams.request(ResetDbStatsRequest {});
            self.upstreams
                .call(ENROLLMENT, client.reset_db_stats(request))
                .await
                .map(|_| Some(ENROLLMENT))
        };
        let (catalog, enrollment) = tokio::try_join!(catalog, enrollment)?;
        Ok([catalog, enrollment].into_iter().flatten().collect())
    }

    /// Courses of any status (the public catalog shows only published ones), for the admin
    /// console's list of drafts.
    pub async fn admin_courses(
        &self,
        caller: Option<&Caller>,
        status: CourseStatus,
        page_size: i32,
        page_token: String,
    ) -> Result<ListCoursesResponse, Error> {
        require(caller, Role::Admin)?;
        let mut client = self.upstreams.catalog();
        let request = self.upstreams.request(ListCoursesRequest {
            status: status.into(),
            page_size,
            page_token,
            ..ListCoursesRequest::default()
        });
        self.upstreams
            .call(CATALOG, client.list_courses(request))
            .await
    }
}

/// Statements by total time and RPCs by database time, largest first — what the services send;
/// sorted again here so the gateway's answer keeps its promise whatever the upstream's version.
fn sorted(mut stats: common::DbStats) -> common::DbStats {
    stats
        .statements
        .sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
    stats
        .rpcs
        .sort_by(|a, b| b.db_time_ms.total_cmp(&a.db_time_ms));
    stats
}

/// `GET /v1/admin/db/stats`: `{"catalog": {...}, "enrollment": {...} | null}`.
#[derive(Debug, Serialize)]
pub struct DbStatsPairJson {
    pub catalog: Option<DbStatsJson>,
    pub enrollment: Option<DbStatsJson>,
}

impl From<GetDbStatsResponse> for DbStatsPairJson {
    fn from(response: GetDbStatsResponse) -> Self {
        Self {
            catalog: response.catalog.map(Into::into),
            enrollment: response.enrollment.map(Into::into),
        }
    }
}

/// One service's statistics; times in milliseconds.
#[derive(Debug, Serialize)]
pub struct DbStatsJson {
    pub service: String,
    pub backend: String,
    pub since: Option<String>,
    pub totals: DbTotalsJson,
    pub thresholds: DbThresholdsJson,
    pub statements: Vec<StatementJson>,
    pub rpcs: Vec<RpcJson>,
}

#[derive(Debug, Default, Serialize)]
pub struct DbTotalsJson {
    pub statements: u64,
    pub errors: u64,
    pub slow: u64,
    pub n_plus_one: u64,
    pub rpc_calls: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct DbThresholdsJson {
    pub slow_query_ms: f64,
    pub n_plus_one: u64,
}

#[derive(Debug, Serialize)]
pub struct StatementJson {
    pub statement: String,
    pub count: u64,
    pub errors: u64,
    pub total_ms: f64,
    pub avg_ms: f64,
    pub median_ms: f64,
    pub p99_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct RpcJson {
    pub rpc: String,
    pub calls: u64,
    pub statements: u64,
    pub avg_statements: f64,
    pub max_statements: u64,
    pub db_time_ms: f64,
    pub n_plus_one: u64,
    pub n_plus_one_findings: Vec<NPlusOneJson>,
}

#[derive(Debug, Serialize)]
pub struct NPlusOneJson {
    pub statement: String,
    pub calls: u64,
    pub max_repeats: u64,
}

impl From<common::DbStats> for DbStatsJson {
    fn from(stats: common::DbStats) -> Self {
        let totals = stats.totals.unwrap_or_default();
        let thresholds = stats.thresholds.unwrap_or_default();
        Self {
            since: rfc3339(stats.since.as_ref()),
            service: stats.service,
            backend: stats.backend,
            totals: DbTotalsJson {
                statements: totals.statements,
                errors: totals.errors,
                slow: totals.slow,
                n_plus_one: totals.n_plus_one,
                rpc_calls: totals.rpc_calls,
            },
            thresholds: DbThresholdsJson {
                slow_query_ms: thresholds.slow_query_ms,
                n_plus_one: thresholds.n_plus_one,
            },
            statements: stats
                .statements
                .into_iter()
                .map(|s| StatementJson {
                    statement: s.statement,
                    count: s.count,
                    errors: s.errors,
                    total_ms: s.total_ms,
                    avg_ms: s.avg_ms,
                    median_ms: s.median_ms,
                    p99_ms: s.p99_ms,
                    min_ms: s.min_ms,
                    max_ms: s.max_ms,
                })
                .collect(),
            rpcs: stats
                .rpcs
                .into_iter()
                .map(|r| RpcJson {
                    rpc: r.rpc,
                    calls: r.calls,
                    statements: r.statements,
                    avg_statements: r.avg_statements,
                    max_statements: r.max_statements,
                    db_time_ms: r.db_time_ms,
                    n_plus_one: r.n_plus_one,
                    n_plus_one_findings: r
                        .n_plus_one_findings
                        .into_iter()
                        .map(|f| NPlusOneJson {
                            statement: f.statement,
                            calls: f.calls,
                            max_repeats: f.max_repeats,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(name: &str, total_ms: f64) -> common::StatementStats {
        common::StatementStats {
            statement: name.into(),
            total_ms,
            ..Default::default()
        }
    }

    #[test]
    fn statements_come_out_largest_total_first() {
        let stats = sorted(common::DbStats {
            statements: vec![
                statement("a", 1.0),
                statement("b", 9.5),
                statement("c", 3.0),
            ],
            ..Default::default()
        });
        let names: Vec<&str> = stats
            .statements
            .iter()
            .map(|s| s.statement.as_str())
            .collect();
        assert_eq!(names, ["b", "c", "a"]);
    }
}
