//! Before anything is measured: refuse what this machine or this server cannot or must not
//! hold, then create, migrate and seed the perf databases (or reuse a finished seed).
use std::{path::Path, time::Instant};

use anyhow::{Context, bail};
use learnhub_db::{Db, DbOptions, run_migrations};

use crate::{
    machine,
    pg::{DbState, PgAdmin},
    platform::PlatformOptions,
    scale::{Scale, human_bytes},
};

/// What to prepare, and where.
#[derive(Debug, Clone)]
pub struct Target {
    pub scale: Scale,
    /// Maintenance URL (`postgres://…/postgres`): perf-report creates its databases from it.
    pub postgres: String,
    pub redis_url: String,
    pub redis_prefix: String,
    /// Use an existing database perf-report did not create.
    pub reuse_existing: bool,
}

impl Target {
    pub fn catalog_db(&self) -> String {
        format!("lh_perf_catalog_s{}", self.scale.db_suffix())
    }

    pub fn enrollment_db(&self) -> String {
        format!("lh_perf_enrollment_s{}", self.scale.db_suffix())
    }
}

/// Databases ready to serve, and the versions of the servers behind them.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub catalog_url: String,
    pub enrollment_url: String,
    pub postgres_version: String,
    pub redis_version: String,
    /// What the seed did, when it ran in this invocation.
    pub seed_summary: Option<String>,
    /// Both databases' size after seeding (bytes).
    pub size: u64,
}

pub async fn prepare(target: &Target) -> anyhow::Result<Prepared> {
    // Everything that can refuse runs before the first write.
    let redis_version = machine::redis_version(&target.redis_url)
        .await
        .context("Redis must be reachable for the cached configuration")?;
    let mut admin = PgAdmin::connect(&target.postgres).await?;
    let postgres_version = admin.version().await?;
    let names = [target.catalog_db(), target.enrollment_db()];
    let mut states = Vec::new();
    for name in &names {
        let state = admin.state(name).await?;
        if state == DbState::Foreign && !target.reuse_existing {
            bail!(
                "database {name} already exists and was not created by perf-report (it has no \
                 perf-report mark); refusing to touch it. Drop or rename it, or pass \
                 --reuse-existing to use it as it is (perf-report then extends its data and \
                 drops and recreates its performance indexes)."
            );
        }
        if let DbState::Ours { scale, .. } = &state
            && *scale != target.scale.label()
        {
            bail!(
                "database {name} was created by perf-report for scale {scale}, not {}",
                target.scale
            );
        }
        states.push(state);
    }
    let mut existing = 0;
    for (name, state) in names.iter().zip(&states) {
        if matches!(state, DbState::Ours { seeded: true, .. } | DbState::Foreign) {
            existing += admin.size(name).await?;
        }
    }
    check_room(&mut admin, target.scale, existing).await?;

    let all_seeded = states
        .iter()
        .all(|s| matches!(s, DbState::Ours { seeded: true, .. }));
    for (name, state) in names.iter().zip(&states) {
        match state {
            DbState::Missing => admin.create(name, &target.scale.label()).await?,
            // A seed of ours that did not finish: start it again from nothing.
            DbState::Ours { seeded: false, .. } => {
                eprintln!("perf-report: {name} holds an unfinished seed; recreating it");
                admin.drop_database(name).await?;
                admin.create(name, &target.scale.label()).await?;
            }
            DbState::Ours { seeded: true, .. } | DbState::Foreign => {}
        }
    }
    let catalog_url = admin.url_of(&names[0])?;
    let enrollment_url = admin.url_of(&names[1])?;
    let seed_summary = if all_seeded {
        eprintln!(
            "perf-report: reusing the seeded databases {} and {}",
            names[0], names[1]
        );
        None
    } else {
        let summary = seed(target.scale, &catalog_url, &enrollment_url).await?;
        for (name, state) in names.iter().zip(&states) {
            if *state != DbState::Foreign {
                admin.mark(name, &target.scale.label(), true).await?;
            }
        }
        Some(summary)
    };
    let size = admin.size(&names[0]).await? + admin.size(&names[1]).await?;
    Ok(Prepared {
        catalog_url,
        enrollment_url,
        postgres_version,
        redis_version,
        seed_summary,
        size,
    })
}

/// Refuses a scale whose databases would not fit on the server's disk, or whose run would not
/// fit in this machine's memory.
async fn check_room(admin: &mut PgAdmin, scale: Scale, existing: u64) -> anyhow::Result<()> {
    let disk_need = scale.disk_need().saturating_sub(existing);
    if admin.is_local() {
        let dir = admin
            .data_directory()
            .await
            .filter(|dir| Path::new(dir).exists())
            .unwrap_or_else(|| "/".into());
        let available = machine::disk_available(Path::new(&dir))?;
        machine::check_fits(
            "disk",
            disk_need,
            available,
            &format!(
                "(Postgres data directory {dir}; scale {scale} takes about {} with its WAL). \
                 Choose a smaller --scale or free some space.",
                human_bytes(scale.disk_need())
            ),
        )?;
    } else {
        eprintln!(
            "perf-report: Postgres is not on this machine; cannot check its disk (scale {scale} \
             needs about {})",
            human_bytes(disk_need)
        );
    }
    let memory = machine::meminfo("MemAvailable:").context("cannot read /proc/meminfo")?;
    machine::check_fits(
        "memory",
        scale.memory_need(),
        memory,
        "Choose a smaller --scale or stop something.",
    )
}

/// Migrates both databases (indexes included: the seed's own lookups use them) and seeds them.
async fn seed(scale: Scale, catalog_url: &str, enrollment_url: &str) -> anyhow::Result<String> {
    run_migrations(catalog_url, catalog_svc::migrations()).await?;
    run_migrations(enrollment_url, enrollment_svc::migrations()).await?;
    let options = |url: &str, name: &'static str| DbOptions {
        url: url.to_owned(),
        pool_size: enrollment_svc::seed::POSTGRES_WRITERS as u32,
        // Multi-row inserts are meant to be big: no slow-query log lines for them.
        slow_query: std::time::Duration::from_secs(600),
        n_plus_one_threshold: 5,
        application_name: name,
    };

    let started = Instant::now();
    eprintln!("perf-report: seeding {} courses", scale.courses());
    let catalog_db = Db::connect(&options(catalog_url, "perf-report seed")).await?;
    let catalog_report = catalog_svc::seed::run(&catalog_db, scale.courses(), true).await?;
    let catalog_time = started.elapsed();

    // enrollment-svc's seed reads the published catalog from a running catalog-svc.
    let platform = learnhub::Platform::start(
        &PlatformOptions {
            catalog_url: catalog_url.to_owned(),
            enrollment_url: enrollment_url.to_owned(),
            cache: None,
            internal_mtls: false,
        }
        .config(),
    )
    .await?;
    let client = enrollment_svc::catalog_client::CatalogClient::connect_lazy(
        &format!(
            "http://{}",
            platform
                .catalog_addr()
                .context("catalog-svc listens on a port")?
        ),
        std::time::Duration::from_secs(30),
    )?;
    let plan = scale.plan();
    eprintln!(
        "perf-report: seeding {} users, {} enrollments, {} lesson-progress rows, {} submissions",
        plan.users, plan.enrollments, plan.progress, plan.submissions
    );
    let enrollment_db = Db::connect(&options(enrollment_url, "perf-report seed")).await?;
    let enrollment_started = Instant::now();
    let learners = enrollment_svc::seed::run(&enrollment_db, &client, plan, true).await;
    platform.stop().await?;
    let learners = learners?;
    let enrollment_time = enrollment_started.elapsed();

    eprintln!("perf-report: VACUUM ANALYZE");
    crate::pg::vacuum_analyze(catalog_url).await?;
    crate::pg::vacuum_analyze(enrollment_url).await?;
    Ok(format!(
        "catalog: {} courses, {} lessons, {} exercises in {:.1} s; learners: {} users, {} \
         enrollments, {} lesson-progress rows, {} submissions in {:.1} s; total with VACUUM \
         ANALYZE {:.1} s",
        catalog_report.courses,
        catalog_report.lessons,
        catalog_report.exercises,
        catalog_time.as_secs_f64(),
        learners.users,
        learners.enrollments,
        learners.progress,
        learners.submissions,
        enrollment_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    ))
}

/// Drops both databases of a scale, refusing any that perf-report did not create.
pub async fn drop_databases(target: &Target) -> anyhow::Result<()> {
    let mut admin = PgAdmin::connect(&target.postgres).await?;
    for name in [target.catalog_db(), target.enrollment_db()] {
        match admin.state(&name).await? {
            DbState::Missing => eprintln!("perf-report: {name} does not exist"),
            DbState::Foreign => {
                bail!("database {name} was not created by perf-report; refusing to drop it")
            }
            DbState::Ours { .. } => {
                admin.drop_database(&name).await?;
                eprintln!("perf-report: dropped {name}");
            }
        }
    }
    Ok(())
}
