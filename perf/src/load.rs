//! `perf-report load`: the catalog page through the gateway at fixed concurrency over REST and
//! gRPC (warm cache), next to the gateway's cheapest endpoint on the same harness (REST
//! `/healthz`, gRPC health `Check`), so the page's cost above the floor is visible.
use std::{fmt::Write as _, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::{
    harness::{self, Limit, Measurement},
    machine::Machine,
    pg,
    platform::{Platform, PlatformOptions},
    prepare::{Target, prepare},
    run::hits_and_misses,
    workload::{Scenario, Workload},
};

#[derive(Debug, Clone)]
pub struct LoadSettings {
    pub concurrency: Vec<usize>,
    pub connections: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub out_dir: PathBuf,
    pub command_line: String,
    /// The endpoints measured, in this order (all four when empty).
    pub endpoints: Vec<Endpoint>,
    /// The services call each other over mutual TLS.
    pub internal_mtls: bool,
    /// The gateway's and catalog-svc's near-caches on (the services' default) or off.
    pub near_cache: bool,
}

/// The four measured endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Endpoint {
    CatalogGrpc,
    CatalogRest,
    HealthGrpc,
    HealthRest,
}

impl Endpoint {
    const ALL: [Endpoint; 4] = [
        Endpoint::CatalogGrpc,
        Endpoint::HealthGrpc,
        Endpoint::CatalogRest,
        Endpoint::HealthRest,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::CatalogGrpc => "catalog page, gRPC GetCatalogPage",
            Self::CatalogRest => "catalog page, REST GET /v1/catalog",
            Self::HealthGrpc => "floor, gRPC grpc.health.v1 Check",
            Self::HealthRest => "floor, REST GET /healthz",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Self::CatalogGrpc => "catalog_grpc",
            Self::CatalogRest => "catalog_rest",
            Self::HealthGrpc => "health_grpc",
            Self::HealthRest => "health_rest",
        }
    }

    fn floor(self) -> Option<Endpoint> {
        match self {
            Self::CatalogGrpc => Some(Self::HealthGrpc),
            Self::CatalogRest => Some(Self::HealthRest),
            _ => None,
        }
    }
}

struct Row {
    endpoint: Endpoint,
    measurement: Measurement,
    hit_rate: Option<f64>,
}

/// Callers of every endpoint, sharing the gateway connections.
struct Callers {
    workload: Arc<Workload>,
    health: Vec<HealthClient<Channel>>,
    http: reqwest::Client,
    base: String,
}

impl Callers {
    fn call(&self, endpoint: Endpoint, rng: &mut fastrand::Rng) -> crate::workload::Call {
        match endpoint {
            Endpoint::CatalogGrpc => self.workload.call(Scenario::CatalogFirstPage, rng),
            Endpoint::HealthGrpc => {
                let mut client = self.health[rng.usize(..self.health.len())].clone();
                Box::pin(async move {
                    client
                        .check(HealthCheckRequest {
                            service: String::new(),
                        })
                        .await
                        .map(drop)
                        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
                })
            }
            Endpoint::CatalogRest | Endpoint::HealthRest => {
                let path = match endpoint {
                    Endpoint::CatalogRest => {
                        format!(
                            "/v1/catalog?{}",
                            self.workload.pick_filter(rng).rest_query(0)
                        )
                    }
                    _ => "/healthz".to_owned(),
                };
                Box::pin(read_ok(self.http.get(format!("{}{path}", self.base))))
            }
        }
    }
}

/// Sends `request` and reads the whole answer (a page is not served until its last byte is):
/// `Ok` for a successful, non-empty answer.
pub(crate) async fn read_ok(request: reqwest::RequestBuilder) -> Result<(), String> {
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    if status.is_success() && !body.is_empty() {
        Ok(())
    } else {
        Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
    }
}

/// The scale's databases, prepared and with the performance indexes on, and the machine
/// measured on: what every load-style benchmark starts from.
pub(crate) async fn prepare_indexed(
    target: &Target,
) -> anyhow::Result<(crate::prepare::Prepared, Machine)> {
    let prepared = prepare(target).await?;
    let machine = Machine::describe(
        prepared.postgres_version.clone(),
        prepared.redis_version.clone(),
    );
    for (url, migrations) in [
        (&prepared.catalog_url, catalog_svc::migrations as fn() -> _),
        (
            &prepared.enrollment_url,
            enrollment_svc::migrations as fn() -> _,
        ),
    ] {
        pg::set_performance_indexes(url, migrations, true).await?;
    }
    Ok((prepared, machine))
}

pub async fn load(target: &Target, settings: &LoadSettings) -> anyhow::Result<()> {
    let (prepared, machine) = prepare_indexed(target).await?;
    let (min_user, max_user, _) = pg::user_ids(&prepared.enrollment_url).await?;
    let mut config = PlatformOptions {
        catalog_url: prepared.catalog_url.clone(),
        enrollment_url: prepared.enrollment_url.clone(),
        cache: Some((target.redis_url.clone(), target.redis_prefix.clone())),
        internal_mtls: settings.internal_mtls,
    }
    .config();
    if !settings.near_cache {
        config.near_cache = learnhub_cache_client::NearCacheArgs::off();
    }
    let platform = Platform::start_with_config(config).await?;
    let outcome = measure_all(&platform, target, settings, (min_user, max_user)).await;
    platform.stop().await?;
    let tables = outcome?;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# learnhub load benchmark: the catalog page against the gateway's floor\n\n\
         Measured with `{}` (perf-report, {} build) at scale {} (indexes + cache on Redis, warm; near-caches {}).\n\n\
         Method: gateway, services and load generator in one process on this {}-CPU box; closed \
         loop at the given concurrency for {} s per endpoint after {} s of warm-up; gRPC over {} \
         HTTP/2 connection(s), REST over HTTP/1.1 keep-alive connections (one per caller). The \
         catalog page is the first page of one of {} filters (all / python / sql / each \
         category), anonymous: {}. The floor is the cheapest call the gateway answers (health), \
         on the same harness, so `page / floor` is what the page itself costs. CPU µs/call is this \
         process's CPU time (every service and the load generator; not Postgres or Redis) per \
         call: unlike calls/s, it holds when other work shares the machine.\n",
        settings.command_line,
        machine.profile,
        target.scale,
        if settings.near_cache { "on" } else { "off" },
        machine.cpus,
        settings.duration.as_secs(),
        settings.warmup.as_secs(),
        settings.connections,
        tables.first().map_or(0, |(_, _, filters)| *filters),
        Scenario::CatalogFirstPage.describe()
    );
    for (concurrency, rows, _) in &tables {
        let _ = writeln!(
            out,
            "## Concurrency {concurrency}\n\n\
             | Endpoint | calls/s | p50 ms | p99 ms | mean ms | CPU µs/call | throughput vs floor | p50 vs floor | cache hit rate |\n\
             |---|---|---|---|---|---|---|---|---|"
        );
        for row in rows {
            let m = &row.measurement;
            let floor = row
                .endpoint
                .floor()
                .and_then(|f| rows.iter().find(|r| r.endpoint == f));
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:.3} | {:.3} | {:.3} | {} | {} | {} | {} |",
                row.endpoint.name(),
                m.throughput(),
                m.p50_ms(),
                m.p99_ms(),
                m.mean_ms(),
                m.cpu_micros_per_call()
                    .map_or("-".into(), |cpu| format!("{cpu:.0}")),
                floor.map_or("-".into(), |f| format!(
                    "{:.0} %",
                    100.0 * m.throughput() / f.measurement.throughput().max(1e-9)
                )),
                floor.map_or("-".into(), |f| format!(
                    "{:.1}x",
                    m.p50_ms() / f.measurement.p50_ms().max(1e-9)
                )),
                row.hit_rate
                    .map_or("-".into(), |r| format!("{:.1} %", 100.0 * r)),
            );
        }
        out.push('\n');
    }
    out.push_str("## Machine\n\n");
    out.push_str(&machine.markdown());
    println!("{out}");
    std::fs::create_dir_all(&settings.out_dir)?;
    let path = settings.out_dir.join("load.md");
    std::fs::write(&path, &out).with_context(|| format!("writing {}", path.display()))?;
    let json_path = settings.out_dir.join("load.json");
    let runs: Vec<serde_json::Value> = tables
        .iter()
        .map(|(concurrency, rows, _)| {
            let endpoints: serde_json::Map<String, serde_json::Value> = rows
                .iter()
                .map(|r| {
                    let m = &r.measurement;
                    (
                        r.endpoint.key().to_owned(),
                        serde_json::json!({
                            "throughput": m.throughput(), "p50_ms": m.p50_ms(),
                            "p99_ms": m.p99_ms(), "mean_ms": m.mean_ms(),
                            "cpu_micros_per_call": m.cpu_micros_per_call(),
                            "cache_hit_rate": r.hit_rate,
                        }),
                    )
                })
                .collect();
            serde_json::json!({"concurrency": concurrency, "endpoints": endpoints})
        })
        .collect();
    let json =
        serde_json::json!({"scale": target.scale.value(), "date": machine.date, "runs": runs});
    std::fs::write(&json_path, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    eprintln!(
        "perf-report: wrote {} and {}",
        path.display(),
        json_path.display()
    );
    Ok(())
}

async fn measure_all(
    platform: &Platform,
    target: &Target,
    settings: &LoadSettings,
    users: (i64, i64),
) -> anyhow::Result<Vec<(usize, Vec<Row>, usize)>> {
    platform.clear_cache().await?;
    let workload = Arc::new(
        Workload::discover(
            &platform.gateway_url(),
            settings.connections,
            users,
            target.scale.plan().users,
        )
        .await?,
    );
    let mut health = Vec::new();
    for _ in 0..settings.connections.max(1) {
        let channel = Channel::from_shared(platform.gateway_url())?
            .tcp_nodelay(true)
            .connect()
            .await?;
        health.push(HealthClient::new(channel));
    }
    let callers = Arc::new(Callers {
        workload: Arc::clone(&workload),
        health,
        http: reqwest::Client::builder().tcp_nodelay(true).build()?,
        base: platform.gateway_url(),
    });
    let mut tables = Vec::new();
    for &concurrency in &settings.concurrency {
        let mut rows = Vec::new();
        let endpoints = if settings.endpoints.is_empty() {
            &Endpoint::ALL[..]
        } else {
            &settings.endpoints[..]
        };
        for &endpoint in endpoints {
            let call = {
                let callers = Arc::clone(&callers);
                move |rng: &mut fastrand::Rng| callers.call(endpoint, rng)
            };
            let warm = Limit {
                requests: u64::MAX,
                duration: settings.warmup,
            };
            harness::measure(concurrency, warm, 99, call.clone()).await;
            platform.reset_cache_stats().await?;
            let limit = Limit {
                requests: u64::MAX,
                duration: settings.duration,
            };
            let measurement = harness::measure(concurrency, limit, 7, call).await;
            if measurement.errors > 0 {
                anyhow::bail!(
                    "{}: {} of {} calls failed, first: {}",
                    endpoint.name(),
                    measurement.errors,
                    measurement.requests,
                    measurement.first_error.unwrap_or_default()
                );
            }
            let hit_rate = match endpoint {
                Endpoint::CatalogGrpc | Endpoint::CatalogRest => platform
                    .cache_stats()
                    .await?
                    .map(|s| hits_and_misses(&s))
                    .filter(|(h, m)| h + m > 0)
                    .map(|(h, m)| h as f64 / (h + m) as f64),
                _ => None,
            };
            eprintln!(
                "  c={concurrency:<4} {:<36} {:>8.0} calls/s  p50 {:>7.3} ms  p99 {:>7.3} ms",
                endpoint.name(),
                measurement.throughput(),
                measurement.p50_ms(),
                measurement.p99_ms()
            );
            rows.push(Row {
                endpoint,
                measurement,
                hit_rate,
            });
        }
        tables.push((concurrency, rows, workload.filters.len()));
    }
    Ok(tables)
}
