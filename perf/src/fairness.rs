//! `perf-report fairness`: one caller floods the gateway while a second caller's latency is
//! measured, with the gateway's limits on and off; and the stream flood of issue 10 (one HTTP/2
//! connection, thousands of concurrent streams, as `h2load -c 1 -m N`), counted by status.
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use gateway::{
    auth::{Role, issue_token},
    limits::LimitConfig,
};

use hdrhistogram::Histogram;

use crate::{
    harness::Measurement,
    machine::Machine,
    platform::{Platform, PlatformOptions, SECRET},
    prepare::Target,
};

#[derive(Debug, Clone)]
pub struct FairnessSettings {
    /// Seconds the second caller is measured, unloaded and during the flood.
    pub duration: Duration,
    /// Concurrent streams of the flooding caller on its one HTTP/2 connection.
    pub flood_streams: usize,
    /// The stream flood: requests in all, and how many in flight at once on one connection.
    pub burst_requests: u64,
    pub burst_streams: usize,
    /// Which gateway configurations to measure.
    pub modes: Vec<Mode>,
    pub out_dir: PathBuf,
    pub command_line: String,
}

/// The gateway's limits in a measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// The defaults of the flags (rate limits, stream cap, load shedding).
    On,
    /// Every gateway limit off: the gateway as it was before them.
    Off,
}

impl Mode {
    fn limits(self) -> LimitConfig {
        match self {
            Self::On => LimitConfig::default(),
            Self::Off => LimitConfig::off(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::On => "limits on (defaults)",
            Self::Off => "limits off",
        }
    }
}

/// What one flood got back, by HTTP status; `stream_errors` are streams reset or refused.
#[derive(Debug, Default, Clone)]
pub struct FloodCounts {
    pub statuses: BTreeMap<u16, u64>,
    pub stream_errors: u64,
    pub first_stream_error: Option<String>,
    pub elapsed: Duration,
}

impl FloodCounts {
    fn total(&self) -> u64 {
        self.statuses.values().sum::<u64>() + self.stream_errors
    }

    fn count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    /// `200: n, 429: n, …, stream errors: n`.
    fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .statuses
            .iter()
            .map(|(status, n)| format!("{status}: {n}"))
            .collect();
        if self.stream_errors > 0 {
            parts.push(format!("stream errors: {}", self.stream_errors));
        }
        parts.join(", ")
    }
}

/// When a flood stops: after `requests`, or when `stop` is set.
struct FloodEnd {
    requests: u64,
    stop: Arc<AtomicBool>,
}

/// `streams` concurrent `GET path` on one HTTP/2 connection (with `token` if given) until `end`.
async fn flood(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    streams: usize,
    end: FloodEnd,
) -> anyhow::Result<FloodCounts> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    // Thousands of responses in flight arrive as many small DATA frames: h2's guard against a
    // server that sends them on purpose would end the flood's own connection.
    let (client, connection) = h2::client::Builder::new()
        .max_concurrent_reset_streams(usize::MAX)
        .data_frame_budget(usize::MAX / 2)
        .handshake::<_, tonic::codegen::Bytes>(tcp)
        .await?;
    tokio::spawn(connection);
    let uri = format!("http://{addr}{path}");
    let authorization = token.map(|token| format!("Bearer {token}"));
    // One request first, as h2load does: the server's SETTINGS (its stream cap) have arrived
    // once it is answered. Not counted.
    let mut first = http::Request::get(uri.as_str());
    if let Some(value) = &authorization {
        first = first.header(http::header::AUTHORIZATION, value);
    }
    let (response, _) = client
        .clone()
        .ready()
        .await?
        .send_request(first.body(())?, true)?;
    read_to_end(response).await?;
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..streams.max(1) {
        let (client, uri, authorization) = (client.clone(), uri.clone(), authorization.clone());
        let (issued, stop, requests) = (issued.clone(), end.stop.clone(), end.requests);
        workers.spawn(async move {
            let mut counts = FloodCounts::default();
            while !stop.load(Ordering::Relaxed) && issued.fetch_add(1, Ordering::Relaxed) < requests
            {
                let mut request = http::Request::get(uri.as_str());
                if let Some(value) = &authorization {
                    request = request.header(http::header::AUTHORIZATION, value);
                }
                let Ok(request) = request.body(()) else {
                    break;
                };
                let Ok(mut ready) = client.clone().ready().await else {
                    // The connection is gone: nothing more can be sent on it.
                    counts.stream_errors += 1;
                    break;
                };
                let sent = match ready.send_request(request, true) {
                    Ok((response, _)) => read_to_end(response).await,
                    Err(err) => Err(err),
                };
                match sent {
                    Ok(status) => *counts.statuses.entry(status).or_insert(0) += 1,
                    Err(err) => {
                        counts.stream_errors += 1;
                        counts.first_stream_error.get_or_insert(err.to_string());
                    }
                }
            }
            counts
        });
    }
    let mut total = FloodCounts::default();
    while let Some(worker) = workers.join_next().await {
        let counts = worker?;
        for (status, n) in counts.statuses {
            *total.statuses.entry(status).or_insert(0) += n;
        }
        total.stream_errors += counts.stream_errors;
        if total.first_stream_error.is_none() {
            total.first_stream_error = counts.first_stream_error;
        }
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

/// Runs [`flood`] on a thread and runtime of its own, as a client on another machine would: its
/// tasks share the CPUs with the platform's, but never queue ahead of them on the platform's
/// runtime.
fn flood_from_own_thread(
    addr: SocketAddr,
    path: &'static str,
    token: Option<String>,
    streams: usize,
    end: FloodEnd,
) -> tokio::sync::oneshot::Receiver<anyhow::Result<FloodCounts>> {
    let (done, outcome) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let counts = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| {
                runtime.block_on(flood(addr, path, token.as_deref(), streams, end))
            });
        // The receiver is gone only if the measurement was abandoned.
        let _ = done.send(counts);
    });
    outcome
}

/// The status of a response, once its body has been read to the end (a page is not served until
/// its last byte is, and unread DATA frames would count against the client's own frame budget).
async fn read_to_end(response: h2::client::ResponseFuture) -> Result<u16, h2::Error> {
    let (head, mut body) = response.await?.into_parts();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        body.flow_control().release_capacity(chunk.len())?;
    }
    Ok(head.status.as_u16())
}

/// The second caller: one call every `every` (or right after the previous one, if that took
/// longer), for `duration`, each latency recorded. Paced, so that it stays within its own rate
/// limit: what is measured is what the flood does to a well-behaved caller.
async fn paced<F, Fut>(duration: Duration, every: Duration, call: F) -> Measurement
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut micros = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| unreachable!("constant bounds are valid"));
    let (mut requests, mut errors, mut first_error) = (0, 0, None);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    while started.elapsed() < duration {
        tick.tick().await;
        let sent = Instant::now();
        let result = call().await;
        micros.saturating_record(
            u64::try_from(sent.elapsed().as_micros())
                .unwrap_or(u64::MAX)
                .max(1),
        );
        requests += 1;
        if let Err(err) = result {
            errors += 1;
            first_error.get_or_insert(err);
        }
    }
    Measurement {
        requests,
        errors,
        first_error,
        elapsed: started.elapsed(),
        concurrency: 1,
        micros,
        cpu: None,
    }
}

/// The figures of one gateway configuration.
struct ModeResult {
    mode: Mode,
    unloaded: Measurement,
    flooded: Measurement,
    flood: FloodCounts,
    burst: FloodCounts,
    /// The second caller's one request right after the stream flood.
    after_burst: String,
}

pub async fn fairness(target: &Target, settings: &FairnessSettings) -> anyhow::Result<()> {
    let (prepared, machine) = crate::load::prepare_indexed(target).await?;
    let options = PlatformOptions {
        catalog_url: prepared.catalog_url.clone(),
        enrollment_url: prepared.enrollment_url.clone(),
        cache: Some((target.redis_url.clone(), target.redis_prefix.clone())),
        internal_mtls: false,
    };
    let mut results = Vec::new();
    for &mode in &settings.modes {
        let platform = Platform::start_with_limits(&options, mode.limits()).await?;
        let outcome = measure_mode(&platform, mode, settings).await;
        platform.stop().await?;
        results.push(outcome?);
    }
    let out = report(&results, target, settings, &machine);
    println!("{out}");
    std::fs::create_dir_all(&settings.out_dir)?;
    let path = settings.out_dir.join("fairness.md");
    std::fs::write(&path, &out).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("perf-report: wrote {}", path.display());
    Ok(())
}

fn token(subject: &str) -> anyhow::Result<String> {
    issue_token(SECRET, subject, Role::Learner, Duration::from_secs(3600))
        .map_err(|err| anyhow::anyhow!("issuing a token: {err}"))
}

/// The flooding caller and the measured one: two learners (the limits count them apart).
const FLOODER: &str = "1";
const MEASURED: &str = "2";
/// What both callers ask for: the catalog page's first page (warm cache).
const PATH: &str = "/v1/catalog?page_size=20";
/// The second caller's pace: 50 calls/s, 3000/min, within the default read limit (6000/min).
const PACE: Duration = Duration::from_millis(20);
/// What the stream flood asks for, anonymously, as in the issue.
const BURST_PATH: &str = "/v1/categories";

async fn measure_mode(
    platform: &Platform,
    mode: Mode,
    settings: &FairnessSettings,
) -> anyhow::Result<ModeResult> {
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let url = format!("{}{PATH}", platform.gateway_url());
    let measured = format!("Bearer {}", token(MEASURED)?);
    let call = || {
        crate::load::read_ok(
            http.get(&url)
                .header(http::header::AUTHORIZATION, &measured),
        )
    };
    // Warm-up fills the cache and the connection pools.
    paced(Duration::from_secs(1), PACE, call).await;
    eprintln!("  {}: second caller alone", mode.name());
    let unloaded = paced(settings.duration, PACE, call).await;

    eprintln!(
        "  {}: second caller while the first floods ({} streams)",
        mode.name(),
        settings.flood_streams
    );
    let stop = Arc::new(AtomicBool::new(false));
    let flooder = token(FLOODER)?;
    let flood_task = flood_from_own_thread(
        platform.gateway_addr,
        PATH,
        Some(flooder),
        settings.flood_streams,
        FloodEnd {
            requests: u64::MAX,
            stop: stop.clone(),
        },
    );
    let flooded = paced(settings.duration, PACE, call).await;
    stop.store(true, Ordering::Relaxed);
    let flood_counts = flood_task.await??;

    eprintln!(
        "  {}: stream flood ({} requests, {} streams at once)",
        mode.name(),
        settings.burst_requests,
        settings.burst_streams
    );
    let burst = flood_from_own_thread(
        platform.gateway_addr,
        BURST_PATH,
        None,
        settings.burst_streams,
        FloodEnd {
            requests: settings.burst_requests,
            stop: Arc::new(AtomicBool::new(false)),
        },
    )
    .await??;
    let after_burst = match http
        .get(&url)
        .header(http::header::AUTHORIZATION, &measured)
        .send()
        .await
    {
        Ok(response) => response.status().to_string(),
        Err(err) => format!("error: {err}"),
    };
    Ok(ModeResult {
        mode,
        unloaded,
        flooded,
        flood: flood_counts,
        burst,
        after_burst,
    })
}

/// What the tables do and do not say.
const READING: &str = "\n\
Reading the figures: *limits off* turns off the gateway's rate limits and its load limits\n\
(`LimitConfig::off()`); catalog-svc, enrollment-svc and cache-svc keep their default load limits\n\
(256 streams and 32 requests worked on per connection, 1024 in flight), which the platform does\n\
not let perf-report change. With the gateway's limits on, the flooder still gets its own budget\n\
of real work (100 reads/s after a burst of 300): those calls share the two CPUs with the second\n\
caller, and the flooding client itself runs on the same box (on a thread and runtime of its own).\n\
Refused calls wait about `RATE_LIMIT_REFUSAL_DELAY_MS` (250 ms, jittered) before their 429, holding the\n\
flooder's own connection slots (32) instead of the CPUs: that is why the flooder's answers drop\n\
from thousands to a couple of hundred per second, and why the stream flood takes longer with\n\
the limits on.\n\
";

fn report(
    results: &[ModeResult],
    target: &Target,
    settings: &FairnessSettings,
    machine: &Machine,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Fairness and the stream flood: one caller must not break service for the others\n\n\
         Measured with `{}` (perf-report, {} build) at scale {} (indexes + cache on Redis, warm), \
         gateway, services and both callers in one process on this {}-CPU box.\n\n\
         - **Fairness**: the second caller (learner {MEASURED}) calls `GET {PATH}` every {} ms \
         (or right after its previous answer, if that took longer) over HTTP/1.1, for {} s alone, then for {} s while the first \
         caller (learner {FLOODER}) keeps {} streams of the same call in flight on one HTTP/2 \
         connection. Target: the second caller's p99 during the flood within 2x of its p99 \
         alone.\n\
         - **Stream flood** (issue 10's `h2load -n {} -c 1 -m {} {BURST_PATH}`): {} anonymous \
         requests on one HTTP/2 connection, up to {} in flight at once, counted by status; then \
         one call of the second caller.\n",
        settings.command_line,
        machine.profile,
        target.scale,
        machine.cpus,
        PACE.as_millis(),
        settings.duration.as_secs(),
        settings.duration.as_secs(),
        settings.flood_streams,
        settings.burst_requests,
        settings.burst_streams,
        settings.burst_requests,
        settings.burst_streams,
    );
    let _ = writeln!(
        out,
        "## Fairness: the second caller's latency\n\n\
         | gateway | alone p50 ms | alone p99 ms | flooded p50 ms | flooded p99 ms | p99 flooded / alone | second caller's errors | flooder's answers (per s) |\n\
         |---|---|---|---|---|---|---|---|"
    );
    for r in results {
        let ratio = r.flooded.p99_ms() / r.unloaded.p99_ms().max(1e-9);
        let per_sec = r.flood.total() as f64 / r.flood.elapsed.as_secs_f64().max(1e-9);
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2}x {} | {} of {} | {} ({:.0}/s) |",
            r.mode.name(),
            r.unloaded.p50_ms(),
            r.unloaded.p99_ms(),
            r.flooded.p50_ms(),
            r.flooded.p99_ms(),
            ratio,
            if ratio <= 2.0 { "(met)" } else { "(not met)" },
            r.flooded.errors,
            r.flooded.requests,
            r.flood.summary(),
            per_sec,
        );
    }
    let _ = writeln!(
        out,
        "\n## Stream flood: one connection, {} streams at once\n\n\
         | gateway | answers by status | 500s | stream errors | seconds | second caller right after |\n\
         |---|---|---|---|---|---|",
        settings.burst_streams
    );
    for r in results {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {}{} | {:.1} | {} |",
            r.mode.name(),
            r.burst.summary(),
            r.burst.count(500),
            r.burst.stream_errors,
            r.burst
                .first_stream_error
                .as_ref()
                .map_or(String::new(), |e| format!(" (first: {e})")),
            r.burst.elapsed.as_secs_f64(),
            r.after_burst,
        );
    }
    out.push_str(READING);
    out.push_str("\n## Machine\n\n");
    out.push_str(&machine.markdown());
    out
}
