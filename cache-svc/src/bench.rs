//! `cache-svc bench`: Get/Set latency and throughput through cache-svc over loopback gRPC, next to
//! raw Redis GET/SET at the same concurrency, so the ratio shows what the service layer costs.
//! `cache-svc Get` is one Get call per read; `cache-client Get` reads through the services' own
//! client, which coalesces the reads made while its read batches are under way into one batch
//! on its Lookup stream.
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use learnhub_cache_client::{CacheClient, CacheClientOptions, CacheKey};
use learnhub_proto::cache::v1::{GetRequest, SetRequest, cache_service_client::CacheServiceClient};
use tonic::transport::{Channel, Endpoint};

use crate::{Application, Config, error::Error, key::escape_glob, store::redis::Connections};

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Redis to measure against (cache-svc is started in-process on it, on a loopback port).
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Requests in flight at once, for every phase.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Requests per phase (Set, Get; cache-svc and raw Redis).
    #[arg(long, default_value_t = 20_000)]
    pub requests: u64,
    /// Upper bound on each phase, whatever `--requests` says (seconds).
    #[arg(long, default_value_t = 15)]
    pub max_seconds: u64,
    /// Value size (bytes).
    #[arg(long, default_value_t = 256)]
    pub value_bytes: usize,
    /// Distinct keys written and read.
    #[arg(long, default_value_t = 1000)]
    pub keys: u64,
    /// gRPC connections the clients spread over (HTTP/2 multiplexes calls on each).
    #[arg(long, default_value_t = 4)]
    pub channels: usize,
    /// Redis connections for both cache-svc and the raw client: multiplexed, each shared by the
    /// calls in flight (none is checked out), taken in turn.
    #[arg(long, default_value_t = 8)]
    pub redis_pool_size: u32,
    /// Read batches the platform's client (`cache-client Get` phase) keeps under way at once;
    /// reads made meanwhile are coalesced into the next batch on its Lookup stream.
    #[arg(long, default_value_t = learnhub_cache_client::DEFAULT_READS_IN_FLIGHT)]
    pub reads_in_flight: usize,
}

/// One phase's figures.
#[derive(Debug, Clone)]
pub struct Figures {
    pub name: &'static str,
    pub requests: u64,
    pub errors: u64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Runs the five phases and prints them with the cache-svc / Redis ratios.
pub async fn run(args: &BenchArgs) -> Result<Vec<Figures>, Error> {
    let prefix = format!(
        "learnhub-bench-{}-{}:",
        std::process::id(),
        fastrand::u32(..)
    );
    let config = Config {
        listen: "127.0.0.1:0".into(),
        redis_url: Some(args.redis_url.clone()),
        key_prefix: prefix.clone(),
        redis_pool_size: args.redis_pool_size,
        ..Config::default()
    };
    let app = Application::build(&config).await?;
    if !app.cache().on_redis().await {
        return Err(Error::Bench(format!(
            "redis at {} does not answer",
            args.redis_url
        )));
    }
    let addr = app.local_addr();
    let shutdown = learnhub_kit::shutdown::CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));

    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|err| Error::Bench(err.to_string()))?;
    let mut channels = Vec::new();
    for _ in 0..args.channels.max(1) {
        channels.push(
            endpoint
                .connect()
                .await
                .map_err(|err| Error::Bench(err.to_string()))?,
        );
    }
    // The raw client connects as cache-svc does: the ratio is the service layer's cost.
    let raw_options = config
        .redis_options()
        .ok_or_else(|| Error::Bench("no redis url".into()))?;
    let raw =
        Connections::open(&redis::Client::open(args.redis_url.as_str())?, &raw_options).await?;

    let value = vec![b'x'; args.value_bytes];
    let limit = Duration::from_secs(args.max_seconds.max(1));
    let keys = args.keys.max(1);
    let mut figures = Vec::new();

    let grpc = GrpcTarget {
        channels: Arc::new(channels),
        value: value.clone(),
    };
    figures.push(
        phase("cache-svc Set", args, limit, grpc.clone(), move |t, i| {
            t.set(i % keys)
        })
        .await,
    );
    figures.push(
        phase("cache-svc Get", args, limit, grpc, move |t, i| {
            t.get(i % keys)
        })
        .await,
    );
    // The services' own client, on one channel from the kit (as the gateway and catalog-svc
    // call): concurrent reads share batches on its Lookup stream.
    let client = CacheClient::connect_lazy(
        &addr.to_string(),
        CacheClientOptions {
            caller: "bench",
            call_timeout: Duration::from_secs(5),
            reads_in_flight: args.reads_in_flight,
            ..CacheClientOptions::default()
        },
    )
    .map_err(|err| Error::Bench(err.to_string()))?;
    figures.push(
        phase(
            "cache-client Get",
            args,
            limit,
            client.clone(),
            move |c, i| async move {
                let key = CacheKey::new("bench").push(format!("k{}", i % keys));
                matches!(c.get(&key).await, Ok(Some(_)))
            },
        )
        .await,
    );
    let counters = client.counters();
    let redis_target = RawTarget {
        connections: raw.clone(),
        prefix: format!("{prefix}raw:"),
        value,
    };
    figures.push(
        phase(
            "redis SET",
            args,
            limit,
            redis_target.clone(),
            move |t, i| t.set(i % keys),
        )
        .await,
    );
    figures.push(
        phase("redis GET", args, limit, redis_target, move |t, i| {
            t.get(i % keys)
        })
        .await,
    );

    shutdown.cancel();
    if let Ok(Err(err)) = server.await {
        tracing::warn!(%err, "bench server stopped with an error");
    }
    cleanup(&raw, &prefix).await?;
    print(&figures, args);
    println!(
        "cache-client Get: {} reads in {} calls ({:.1} keys per call)",
        counters.reads,
        counters.calls,
        counters.reads as f64 / counters.calls.max(1) as f64
    );
    Ok(figures)
}

#[derive(Clone)]
struct GrpcTarget {
    channels: Arc<Vec<Channel>>,
    value: Vec<u8>,
}

impl GrpcTarget {
    fn client(&self, i: u64) -> CacheServiceClient<Channel> {
        let n = self.channels.len() as u64;
        CacheServiceClient::new(self.channels[(i % n) as usize].clone())
    }

    async fn set(self, i: u64) -> bool {
        let request = SetRequest {
            key: format!("bench:k{i}"),
            value: self.value.clone(),
            ttl_seconds: 600,
            lease: 0,
        };
        self.client(i).set(request).await.is_ok()
    }

    async fn get(self, i: u64) -> bool {
        let request = GetRequest {
            key: format!("bench:k{i}"),
        };
        matches!(self.client(i).get(request).await, Ok(r) if r.get_ref().found)
    }
}

#[derive(Clone)]
struct RawTarget {
    connections: Connections,
    prefix: String,
    value: Vec<u8>,
}

impl RawTarget {
    async fn set(self, i: u64) -> bool {
        let mut conn = self.connections.pick();
        redis::cmd("SET")
            .arg(format!("{}k{i}", self.prefix))
            .arg(&self.value)
            .arg("PX")
            .arg(600_000)
            .query_async::<()>(&mut conn)
            .await
            .is_ok()
    }

    async fn get(self, i: u64) -> bool {
        let mut conn = self.connections.pick();
        matches!(
            redis::cmd("GET")
                .arg(format!("{}k{i}", self.prefix))
                .query_async::<Option<Vec<u8>>>(&mut conn)
                .await,
            Ok(Some(_))
        )
    }
}

/// `concurrency` workers share a request counter; each phase stops at `requests` or `limit`.
async fn phase<T, F, Fut>(
    name: &'static str,
    args: &BenchArgs,
    limit: Duration,
    target: T,
    op: F,
) -> Figures
where
    T: Clone + Send + 'static,
    F: Fn(T, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + limit;
    let total = args.requests;
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (next, errors, target, op) = (next.clone(), errors.clone(), target.clone(), op.clone());
        workers.push(tokio::spawn(async move {
            let mut histogram = new_histogram();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total || Instant::now() >= deadline {
                    return histogram;
                }
                let t0 = Instant::now();
                if !op(target.clone(), i).await {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                let micros = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
                histogram.saturating_record(micros.max(1));
            }
        }));
    }
    let mut merged = new_histogram();
    for worker in workers {
        if let Ok(histogram) = worker.await {
            let _ = merged.add(histogram);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let requests = merged.len();
    Figures {
        name,
        requests,
        errors: errors.load(Ordering::Relaxed),
        per_second: requests as f64 / elapsed.max(f64::EPSILON),
        p50_ms: merged.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: merged.value_at_quantile(0.99) as f64 / 1000.0,
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant histogram bounds are valid")
}

async fn cleanup(connections: &Connections, prefix: &str) -> Result<(), Error> {
    let mut conn = connections.pick();
    let matcher = format!("{}*", escape_glob(prefix));
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&matcher)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            redis::cmd("UNLINK")
                .arg(keys)
                .query_async::<()>(&mut conn)
                .await?;
        }
        cursor = next;
        if cursor == 0 {
            return Ok(());
        }
    }
}

fn print(figures: &[Figures], args: &BenchArgs) {
    println!(
        "cache-svc bench: concurrency {}, {} B values, {} keys, {} gRPC connections, {} Redis connections",
        args.concurrency, args.value_bytes, args.keys, args.channels, args.redis_pool_size
    );
    println!(
        "{:<15} {:>9} {:>7} {:>12} {:>9} {:>9}",
        "phase", "requests", "errors", "req/s", "p50 ms", "p99 ms"
    );
    for f in figures {
        println!(
            "{:<15} {:>9} {:>7} {:>12.0} {:>9.3} {:>9.3}",
            f.name, f.requests, f.errors, f.per_second, f.p50_ms, f.p99_ms
        );
    }
    for (svc, raw) in [(0, 3), (1, 4), (2, 4)] {
        if let (Some(s), Some(r)) = (figures.get(svc), figures.get(raw)) {
            println!(
                "{} / {}: throughput {:.2}x, p50 {:.2}x, p99 {:.2}x",
                s.name,
                r.name,
                s.per_second / r.per_second.max(f64::EPSILON),
                s.p50_ms / r.p50_ms.max(f64::EPSILON),
                s.p99_ms / r.p99_ms.max(f64::EPSILON),
            );
        }
    }
}
