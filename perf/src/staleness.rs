//! `perf-report staleness`: how soon an acknowledged admin write is visible on every gateway
//! replica when each keeps a near-cache (L1) kept coherent by cache-svc's pushes.
//!
//! Two gateways in front of one catalog-svc, enrollment-svc and cache-svc (Redis); both hold the
//! course in their L1. Each round renames the course through gateway A and, from the moment A
//! acknowledges, reads it on both gateways at once, again and again, until each shows the new
//! title. The
//! time from the acknowledgement to the first fresh read is the staleness window of that
//! gateway (A forgets its own copy as it answers; B waits for the push). The L1 lifetime is a
//! minute here, so only the push can explain a fresh read on B.
use std::{
    fmt::Write as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Context;
use gateway::auth::{Role, issue_token};
use learnhub_cache_client::NearCacheArgs;
use learnhub_proto::{
    catalog::v1::{
        Course, GetCourseRequest, GetCourseResponse, UpdateCourseRequest, get_course_request::Key,
    },
    gateway::v1::{GetCatalogPageRequest, gateway_service_client::GatewayServiceClient},
};
use tonic::{Request, metadata::MetadataValue, transport::Channel};

use crate::{
    load::prepare_indexed,
    platform::{Platform, PlatformOptions, SECRET},
    prepare::Target,
};

#[derive(Debug, Clone)]
pub struct StalenessSettings {
    pub rounds: usize,
    pub out_dir: PathBuf,
    pub command_line: String,
}

/// The L1 lifetime of both gateways: long, so that only a push can make B fresh.
const NEAR_TTL_MS: u64 = 60_000;
/// A round that is not fresh on a gateway after this fails the benchmark.
const GIVE_UP: Duration = Duration::from_secs(10);

pub async fn staleness(target: &Target, settings: &StalenessSettings) -> anyhow::Result<()> {
    let (prepared, machine) = prepare_indexed(target).await?;
    let options = PlatformOptions {
        catalog_url: prepared.catalog_url.clone(),
        enrollment_url: prepared.enrollment_url.clone(),
        cache: Some((target.redis_url.clone(), target.redis_prefix.clone())),
        internal_mtls: false,
    };
    let mut config = options.config();
    config.near_cache = NearCacheArgs {
        near_cache_ttl_ms: NEAR_TTL_MS,
        ..NearCacheArgs::default()
    };
    let platform = Platform::start_with_config(config.clone()).await?;
    let second = SecondGateway::start(&platform, &config).await?;
    let outcome = measure(&platform.gateway_url(), &second.url, settings.rounds).await;
    second.stop().await;
    platform.stop().await?;
    let (a, b) = outcome?;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# learnhub: how soon an admin write is visible on every gateway (near-cache + pushed invalidation)\n\n\
         Measured with `{}` (perf-report, {} build) at scale {} on this {}-CPU box: two gateways in \
         front of one catalog-svc, enrollment-svc and cache-svc (Redis), each gateway with its \
         near-cache (L1, lifetime {} s: only a push can make a copy go). Each of {} rounds renames \
         one published course through gateway A (gRPC UpdateCourse, admin) and then reads the \
         course on A and on B at the same time, again and again (gRPC GetCourse, public), until \
         each shows the new title. Window = from A's acknowledgement to the end of a gateway's \
         first fresh read, so it includes that read (an upper bound on the staleness); a read \
         that still showed the old title is counted as stale.\n",
        settings.command_line,
        machine.profile,
        target.scale,
        machine.cpus,
        NEAR_TTL_MS / 1000,
        settings.rounds,
    );
    let _ = writeln!(
        out,
        "| gateway | rounds | p50 ms | p90 ms | p99 ms | max ms | reads still stale (all rounds) |\n|---|---|---|---|---|---|---|"
    );
    for (name, windows) in [("A (took the write)", &a), ("B (told by push)", &b)] {
        let _ = writeln!(
            out,
            "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            windows.millis.len(),
            quantile(&windows.millis, 0.50),
            quantile(&windows.millis, 0.90),
            quantile(&windows.millis, 0.99),
            quantile(&windows.millis, 1.0),
            windows.stale_reads,
        );
    }
    print!("{out}");
    std::fs::create_dir_all(&settings.out_dir)?;
    let path = settings.out_dir.join("staleness.md");
    std::fs::write(&path, &out).with_context(|| format!("writing {}", path.display()))?;
    println!("written to {}", path.display());
    Ok(())
}

/// A second gateway on the platform's services, with the same settings as the first.
struct SecondGateway {
    url: String,
    shutdown: learnhub_kit::shutdown::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl SecondGateway {
    async fn start(platform: &Platform, config: &learnhub::PlatformConfig) -> anyhow::Result<Self> {
        let gateway_config = platform
            .replica_gateway_config(config)
            .context("a second gateway needs the services on plaintext loopback ports")?;
        let app = gateway::Application::build(&gateway_config).await?;
        let url = format!("http://{}", app.local_addr());
        let shutdown = learnhub_kit::shutdown::CancellationToken::new();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            if let Err(err) = app.run_until_stopped(stop).await {
                tracing::error!(%err, "second gateway");
            }
        });
        Ok(Self {
            url,
            shutdown,
            task,
        })
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

#[derive(Debug, Default)]
struct Windows {
    millis: Vec<f64>,
    stale_reads: u64,
}

async fn measure(a: &str, b: &str, rounds: usize) -> anyhow::Result<(Windows, Windows)> {
    let connect = |url: &str| {
        let url = url.to_owned();
        async move {
            anyhow::Ok(GatewayServiceClient::new(
                Channel::from_shared(url)?.connect().await?,
            ))
        }
    };
    let (mut a, mut b) = (connect(a).await?, connect(b).await?);
    let admin: MetadataValue<_> = format!(
        "Bearer {}",
        issue_token(SECRET, "0", Role::Admin, Duration::from_secs(3600))
            .map_err(|err| anyhow::anyhow!("issuing a token: {err}"))?
    )
    .parse()?;
    let course = first_published(&mut a)
        .await?
        .context("no published course to rename")?;
    let original = course.title.clone();
    let (mut on_a, mut on_b) = (Windows::default(), Windows::default());
    let mut outcome = Ok(());
    for round in 0..rounds {
        // Both gateways hold the course before the write.
        for client in [&mut a, &mut b] {
            title(client, course.id).await?;
            title(client, course.id).await?;
        }
        let new_title = format!("{original} (staleness {round})");
        let mut request = Request::new(UpdateCourseRequest {
            id: course.id,
            title: Some(new_title.clone()),
            ..UpdateCourseRequest::default()
        });
        request
            .metadata_mut()
            .insert("authorization", admin.clone());
        a.update_course(request).await.context("UpdateCourse")?;
        let acknowledged = Instant::now();
        let (mut fresh_a, mut fresh_b) = (None, None);
        while fresh_a.is_none() || fresh_b.is_none() {
            if acknowledged.elapsed() > GIVE_UP {
                outcome = Err(anyhow::anyhow!(
                    "round {round}: not fresh on every gateway after {GIVE_UP:?} (A {fresh_a:?}, B {fresh_b:?})"
                ));
                break;
            }
            // Both gateways read at once, so neither waits for the other's read.
            let (title_a, title_b) = tokio::join!(
                read_unless_fresh(&mut a, course.id, fresh_a.is_some()),
                read_unless_fresh(&mut b, course.id, fresh_b.is_some()),
            );
            for (title, fresh, windows) in [
                (title_a?, &mut fresh_a, &mut on_a),
                (title_b?, &mut fresh_b, &mut on_b),
            ] {
                match title {
                    Some(title) if title == new_title => *fresh = Some(acknowledged.elapsed()),
                    Some(_) => windows.stale_reads += 1,
                    None => {}
                }
            }
        }
        if outcome.is_err() {
            break;
        }
        for (fresh, windows) in [(fresh_a, &mut on_a), (fresh_b, &mut on_b)] {
            if let Some(fresh) = fresh {
                windows.millis.push(fresh.as_secs_f64() * 1000.0);
            }
        }
    }
    let mut restore = Request::new(UpdateCourseRequest {
        id: course.id,
        title: Some(original),
        ..UpdateCourseRequest::default()
    });
    restore.metadata_mut().insert("authorization", admin);
    a.update_course(restore)
        .await
        .context("restoring the title")?;
    outcome.map(|()| (on_a, on_b))
}

/// The course's title, unless this gateway was already seen fresh in this round.
async fn read_unless_fresh(
    client: &mut GatewayServiceClient<Channel>,
    id: i64,
    fresh: bool,
) -> anyhow::Result<Option<String>> {
    if fresh {
        return Ok(None);
    }
    title(client, id).await.map(Some)
}

async fn title(client: &mut GatewayServiceClient<Channel>, id: i64) -> anyhow::Result<String> {
    let response: GetCourseResponse = client
        .get_course(GetCourseRequest {
            key: Some(Key::Id(id)),
        })
        .await
        .context("GetCourse")?
        .into_inner();
    response
        .course
        .map(|course| course.title)
        .context("GetCourse answered no course")
}

/// The first course of the public catalog page.
async fn first_published(
    client: &mut GatewayServiceClient<Channel>,
) -> anyhow::Result<Option<Course>> {
    let page = client
        .get_catalog_page(GetCatalogPageRequest {
            page_size: 1,
            ..GetCatalogPageRequest::default()
        })
        .await
        .context("GetCatalogPage")?
        .into_inner();
    Ok(page.courses.into_iter().find_map(|entry| entry.course))
}

/// The `q` quantile of `values` (nearest rank); 0 for none.
fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
