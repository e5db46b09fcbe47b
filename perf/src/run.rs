//! `perf-report run`: the original report's scenarios through the gateway, in three
//! configurations: (a) no performance indexes and no cache, (b) indexes, (c) indexes + cache.
use std::sync::Arc;

use learnhub_proto::cache::v1::CacheStats;

pub use crate::results::{ConfigResult, Configuration, RunSettings, ScenarioResult};
use crate::{
    harness::{self, Limit},
    machine::Machine,
    pg,
    platform::{Platform, PlatformOptions},
    prepare::{Prepared, Target, prepare},
    report,
    workload::{Scenario, Workload},
};

pub async fn run(target: &Target, settings: &RunSettings) -> anyhow::Result<()> {
    let prepared = prepare(target).await?;
    let machine = Machine::describe(
        prepared.postgres_version.clone(),
        prepared.redis_version.clone(),
    );
    let (min_user, max_user, _) = pg::user_ids(&prepared.enrollment_url).await?;
    let mut results = Vec::new();
    for configuration in Configuration::ALL {
        eprintln!("perf-report: measuring {}", configuration.name());
        let result = measure_configuration(
            target,
            &prepared,
            settings,
            configuration,
            (min_user, max_user),
        )
        .await?;
        results.push(result);
    }
    let report = report::RunReport {
        scale: target.scale,
        settings: settings.clone(),
        prepared: prepared.clone(),
        machine,
        results,
    };
    report::write_run(&report)
}

async fn measure_configuration(
    target: &Target,
    prepared: &Prepared,
    settings: &RunSettings,
    configuration: Configuration,
    users: (i64, i64),
) -> anyhow::Result<ConfigResult> {
    let on = configuration.indexes();
    for (url, migrations) in [
        (&prepared.catalog_url, catalog_svc::migrations as fn() -> _),
        (
            &prepared.enrollment_url,
            enrollment_svc::migrations as fn() -> _,
        ),
    ] {
        let migration = pg::set_performance_indexes(url, migrations, on).await?;
        if on {
            pg::analyze(url).await?;
        }
        tracing::info!(%migration, on, "performance indexes");
    }
    let platform = Platform::start(&PlatformOptions {
        catalog_url: prepared.catalog_url.clone(),
        enrollment_url: prepared.enrollment_url.clone(),
        cache: configuration
            .cache()
            .then(|| (target.redis_url.clone(), target.redis_prefix.clone())),
        internal_mtls: false,
    })
    .await?;
    let outcome = measure_scenarios(&platform, settings, configuration, users, target).await;
    platform.stop().await?;
    outcome
}

async fn measure_scenarios(
    platform: &Platform,
    settings: &RunSettings,
    configuration: Configuration,
    users: (i64, i64),
    target: &Target,
) -> anyhow::Result<ConfigResult> {
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
    let mut scenarios = Vec::new();
    for (n, scenario) in Scenario::REPORT.into_iter().enumerate() {
        let call = {
            let workload = Arc::clone(&workload);
            move |rng: &mut fastrand::Rng| workload.call(scenario, rng)
        };
        // Warm-up: connections, Postgres's buffers and (in (c)) the cache, with other draws
        // of the same traffic than the measurement's.
        let warm = Limit {
            requests: settings.warmup,
            duration: settings.max_duration,
        };
        let warmup =
            harness::measure(settings.concurrency, warm, 1_000 + n as u64, call.clone()).await;
        if warmup.errors > 0 {
            anyhow::bail!(
                "{} failed during warm-up in {}: {} of {} calls, first: {}",
                scenario.name(),
                configuration.name(),
                warmup.errors,
                warmup.requests,
                warmup.first_error.unwrap_or_default()
            );
        }
        platform.reset_profilers();
        platform.reset_cache_stats().await?;
        let limit = Limit {
            requests: settings.requests,
            duration: settings.max_duration,
        };
        let measurement = harness::measure(settings.concurrency, limit, n as u64, call).await;
        let (sql_statements, sql_time) = platform.sql_totals();
        let top_statements = platform.top_statements(3);
        let cache = platform
            .cache_stats()
            .await?
            .map(|stats| hits_and_misses(&stats));
        if measurement.errors > 0 {
            anyhow::bail!(
                "{} failed in {}: {} of {} calls, first: {}",
                scenario.name(),
                configuration.name(),
                measurement.errors,
                measurement.requests,
                measurement.first_error.unwrap_or_default()
            );
        }
        eprintln!(
            "  {:<28} p50 {:>7.3} ms  p99 {:>7.3} ms  {:>8.0} req/s  {:>5.2} SQL/req{}",
            scenario.name(),
            measurement.p50_ms(),
            measurement.p99_ms(),
            measurement.throughput(),
            sql_statements as f64 / measurement.requests.max(1) as f64,
            cache
                .filter(|(h, m)| h + m > 0)
                .map(|(h, m)| format!("  hit rate {:.1} %", 100.0 * h as f64 / (h + m) as f64))
                .unwrap_or_default()
        );
        scenarios.push(ScenarioResult {
            scenario,
            measurement,
            sql_statements,
            sql_time,
            cache,
            top_statements,
        });
    }
    Ok(ConfigResult {
        configuration,
        scenarios,
        distinct_pages: workload.distinct_pages(),
        hot_users: workload.hot_users(),
    })
}

pub fn hits_and_misses(stats: &CacheStats) -> (u64, u64) {
    stats
        .total
        .as_ref()
        .map_or((0, 0), |total| (total.hits, total.misses))
}
