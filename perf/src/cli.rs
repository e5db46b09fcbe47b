//! The command line: `perf-report run`, `perf-report load`, `perf-report fairness`,
//! `perf-report stats`, `perf-report drop`.
use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{
    enrollment_stats::{StatsSettings, stats},
    fairness::{FairnessSettings, Mode, fairness},
    load::{Endpoint, LoadSettings, load},
    prepare::{Target, drop_databases},
    run::{RunSettings, run},
    scale::Scale,
    staleness::{StalenessSettings, staleness},
};

#[derive(Parser)]
#[command(
    name = "perf-report",
    version,
    about = "Seeds a chosen scale and measures learnhub's Phase 9.1 scenarios through the gateway",
    long_about = "Seeds a chosen scale into Postgres databases of its own (lh_perf_catalog_s<S>, \
                  lh_perf_enrollment_s<S>, marked with a COMMENT so they can be reused), starts \
                  the gateway, catalog-svc, enrollment-svc and cache-svc in this process, and \
                  measures through the gateway over real gRPC. Refuses a scale the disk or memory \
                  cannot hold, and any existing database it did not create, before writing \
                  anything. Build with --release for meaningful numbers."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Seed (or reuse) the scale, then measure every scenario in the three configurations
    /// (no indexes/no cache, indexes, indexes + cache); print and write docs/perf/scale-<S>.md.
    Run(RunArgs),
    /// Load benchmark (warm cache): the catalog page over REST and gRPC against the gateway's
    /// cheapest endpoint; print and write docs/perf/load.md.
    Load(LoadArgs),
    /// One caller floods the gateway while a second caller's p99 is measured, alone and during
    /// the flood, with the gateway's limits on and off; plus the one-connection stream flood
    /// counted by status. Print and write docs/perf/fairness.md.
    Fairness(FairnessArgs),
    /// Two gateways with near-caches: how soon an admin write through one is visible on both
    /// (distribution over the rounds); print and write docs/perf/staleness.md.
    Staleness(StalenessArgs),
    /// EnrollmentStats over 366 days from the daily rollup and from the raw tables, p50/p99
    /// (docs/enrollment-rollup.md); printed only.
    Stats {
        #[command(flatten)]
        target: TargetArgs,
        /// Rollup calls measured per range.
        #[arg(long, default_value_t = 50)]
        calls: usize,
        /// Raw-query calls measured per range (seconds each at scale 1).
        #[arg(long, default_value_t = 5)]
        raw_calls: usize,
    },
    /// Drop the databases of a scale (only those perf-report created).
    Drop(TargetArgs),
}

#[derive(Args, Clone)]
struct TargetArgs {
    /// Scale: 1 = 10k courses, 100k users, 1M enrollments, 3M lesson-progress rows, 1M
    /// submissions; 0.1 = a tenth.
    #[arg(long, default_value_t = 0.1)]
    scale: f64,
    /// Maintenance URL of the Postgres server; perf-report creates its databases there.
    #[arg(
        long,
        env = "PERF_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    postgres: String,
    /// Redis for cache-svc.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Prefix of every Redis key of this run's cache-svc.
    #[arg(long, default_value = "lh-perf-report:")]
    redis_prefix: String,
    /// Use databases of the same names that perf-report did not create (otherwise refused).
    #[arg(long)]
    reuse_existing: bool,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Concurrent callers. The default, one per CPU of a 2-core box, measures latency with
    /// little queueing; `perf-report load` measures throughput at higher concurrency.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// HTTP/2 connections to the gateway, shared by the callers.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Calls measured per scenario and configuration (at most).
    #[arg(long, default_value_t = 5_000)]
    requests: u64,
    /// Warm-up calls before each measurement (not measured; they also fill the cache in (c)).
    #[arg(long, default_value_t = 3_000)]
    warmup: u64,
    /// Longest time one measurement (or warm-up) may run, in seconds.
    #[arg(long, default_value_t = 20)]
    max_secs: u64,
    /// Where scale-<S>.md and scale-<S>.json are written.
    #[arg(long, default_value = "docs/perf")]
    out_dir: PathBuf,
}

#[derive(Args)]
struct StalenessArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Writes measured.
    #[arg(long, default_value_t = 200)]
    rounds: usize,
    /// Where staleness.md is written.
    #[arg(long, default_value = "docs/perf")]
    out_dir: PathBuf,
}

#[derive(Args)]
struct LoadArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Concurrent callers; several values (8,32) give a table each.
    #[arg(long, value_delimiter = ',', default_value = "4,16")]
    concurrency: Vec<usize>,
    /// Seconds each endpoint is measured.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Seconds of warm-up before each measurement.
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
    /// HTTP/2 connections to the gateway for the gRPC calls.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Where load.md is written.
    #[arg(long, default_value = "docs/perf")]
    out_dir: PathBuf,
    /// `on`: metrics recorded and spans exported over OTLP/gRPC (to a receiver in this process
    /// that drops them; the sampler comes from OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, e.g.
    /// parentbased_traceidratio and 0.01), as in production. `off`: no metrics recorder and no
    /// tracer, to measure what observability costs.
    #[arg(long, value_enum, default_value_t = Switch::On)]
    observability: Switch,
    /// Only these endpoints, in this order (default: all four).
    #[arg(long, value_enum, value_delimiter = ',')]
    endpoints: Vec<Endpoint>,
    /// The services call each other over mutual TLS (certificates of a CA made at start), as
    /// in production; without it they talk plaintext.
    #[arg(long)]
    internal_mtls: bool,
    /// `on`: the gateway's and catalog-svc's near-caches (L1) in front of cache-svc, as the
    /// services run by default; `off`: every read goes to cache-svc (the cost of the hop).
    #[arg(long, value_enum, default_value_t = Switch::On)]
    near_cache: Switch,
}

#[derive(Args)]
struct FairnessArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Seconds the second caller is measured, alone and during the flood.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Streams the flooding caller keeps in flight on its one HTTP/2 connection.
    #[arg(long, default_value_t = 1000)]
    flood_streams: usize,
    /// Requests of the stream flood (`h2load -n`).
    #[arg(long, default_value_t = 20_000)]
    burst_requests: u64,
    /// Streams in flight at once in the stream flood (`h2load -m`).
    #[arg(long, default_value_t = 10_000)]
    burst_streams: usize,
    /// The gateway configurations measured, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "off,on")]
    modes: Vec<Mode>,
    /// Where fairness.md is written.
    #[arg(long, default_value = "docs/perf")]
    out_dir: PathBuf,
}

/// A `perf-report load` setting: observability (metrics and trace export), near-caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Switch {
    On,
    Off,
}

impl TargetArgs {
    fn target(&self) -> anyhow::Result<Target> {
        Ok(Target {
            scale: Scale::new(self.scale).map_err(anyhow::Error::msg)?,
            postgres: self.postgres.clone(),
            redis_url: self.redis_url.clone(),
            redis_prefix: self.redis_prefix.clone(),
            reuse_existing: self.reuse_existing,
        })
    }
}

/// The command as typed, with the program name only (no paths), for the report.
fn command_line() -> String {
    let mut args = std::env::args();
    args.next();
    std::iter::once("perf-report".to_owned())
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        // Held until the run ends: dropping it flushes the spans still batched.
        let _telemetry = match &self.command {
            Command::Load(args) if args.observability == Switch::On => {
                Some(crate::observability::export_to_sink().await?)
            }
            Command::Load(_) => {
                // Installed first, the no-op recorder keeps the services' recorder out.
                metrics::set_global_recorder(metrics::NoopRecorder)
                    .map_err(|err| anyhow::anyhow!("metrics recorder: {err}"))?;
                init_logs();
                None
            }
            _ => {
                init_logs();
                None
            }
        };
        match self.command {
            Command::Run(args) => {
                anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
                anyhow::ensure!(args.requests > 0, "--requests must be at least 1");
                let target = args.target.target()?;
                let settings = RunSettings {
                    concurrency: args.concurrency,
                    connections: args.connections.max(1),
                    requests: args.requests,
                    warmup: args.warmup,
                    max_duration: Duration::from_secs(args.max_secs.max(1)),
                    out_dir: args.out_dir,
                    command_line: command_line(),
                };
                run(&target, &settings).await
            }
            Command::Staleness(args) => {
                anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
                let target = args.target.target()?;
                let settings = StalenessSettings {
                    rounds: args.rounds,
                    out_dir: args.out_dir,
                    command_line: command_line(),
                };
                staleness(&target, &settings).await
            }
            Command::Load(args) => {
                anyhow::ensure!(
                    !args.concurrency.is_empty() && args.concurrency.iter().all(|c| *c > 0),
                    "--concurrency must be at least 1"
                );
                let target = args.target.target()?;
                let settings = LoadSettings {
                    concurrency: args.concurrency,
                    connections: args.connections.max(1),
                    duration: Duration::from_secs(args.duration_secs.max(1)),
                    warmup: Duration::from_secs(args.warmup_secs),
                    out_dir: args.out_dir,
                    command_line: command_line(),
                    endpoints: args.endpoints,
                    internal_mtls: args.internal_mtls,
                    near_cache: args.near_cache == Switch::On,
                };
                load(&target, &settings).await
            }
            Command::Fairness(args) => {
                anyhow::ensure!(!args.modes.is_empty(), "--modes must name a configuration");
                let target = args.target.target()?;
                let settings = FairnessSettings {
                    duration: Duration::from_secs(args.duration_secs.max(1)),
                    flood_streams: args.flood_streams.max(1),
                    burst_requests: args.burst_requests,
                    burst_streams: args.burst_streams.max(1),
                    modes: args.modes,
                    out_dir: args.out_dir,
                    command_line: command_line(),
                };
                fairness(&target, &settings).await
            }
            Command::Stats {
                target,
                calls,
                raw_calls,
            } => stats(&target.target()?, &StatsSettings { calls, raw_calls }).await,
            Command::Drop(args) => drop_databases(&args.target()?).await,
        }
    }
}

/// Warnings only by default (RUST_LOG overrides): the services' info lines are not the report.
fn init_logs() {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
