//! `perf-report stats`: EnrollmentStats over 366 days of the seeded scale, from the daily rollup
//! and from the raw tables it replaces, p50/p99 of calls on one connection.
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{Days, NaiveTime};
use diesel::{dsl::sql, sql_types::Text};
use diesel_async::RunQueryDsl;
use enrollment_svc::{
    analytics::{EnrollmentStats, enrollment_stats, enrollment_stats_raw},
    domain::StatsRange,
};
use learnhub_db::{Db, DbConn, DbOptions, db_run, run_migrations};

use crate::prepare::{Target, prepare};

/// How many calls each way is measured.
#[derive(Debug, Clone, Copy)]
pub struct StatsSettings {
    pub calls: usize,
    /// The raw query takes seconds a call: fewer of them.
    pub raw_calls: usize,
}

pub async fn stats(target: &Target, settings: &StatsSettings) -> anyhow::Result<()> {
    let prepared = prepare(target).await?;
    // A seed made before the rollup migration gets it here, with its backfill.
    let started = Instant::now();
    run_migrations(&prepared.enrollment_url, enrollment_svc::migrations()).await?;
    eprintln!(
        "perf-report: migrations checked/applied in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let db = Db::connect(&DbOptions {
        url: prepared.enrollment_url.clone(),
        pool_size: 1,
        slow_query: Duration::from_secs(600),
        n_plus_one_threshold: 1_000,
        application_name: "perf-report stats",
    })
    .await?;
    let mut conn = db.conn().await?;
    println!("data span: {}", data_span(&mut conn).await?);

    // Ending tomorrow at midnight, so today's still-moving day is in the range; and the same
    // 366 days shifted to now, with partial days at both ends.
    let now = learnhub_kit::time::now();
    let end = now
        .date()
        .checked_add_days(Days::new(1))
        .context("tomorrow")?
        .and_time(NaiveTime::MIN);
    let ranges = [
        (
            "366 days, midnight to midnight",
            end - chrono::Duration::days(366)..end,
        ),
        ("366 days up to now", now - chrono::Duration::days(366)..now),
    ];
    println!(
        "| range | method | calls | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|"
    );
    for (name, range) in ranges {
        let range = StatsRange {
            from: range.start,
            to: range.end,
        };
        // The first call builds and stores the bitmaps of days that have none (all of them
        // after a seed): reported on its own.
        let cold = Instant::now();
        let first = enrollment_stats(&mut conn, range).await?;
        println!(
            "| {name} | rollup, first call | 1 | {:.1} | | | |",
            ms(cold.elapsed())
        );
        let mut rollup = Vec::with_capacity(settings.calls);
        for _ in 0..settings.calls {
            let at = Instant::now();
            enrollment_stats(&mut conn, range).await?;
            rollup.push(at.elapsed());
        }
        print_row(name, "rollup", &mut rollup);
        let mut raw = Vec::with_capacity(settings.raw_calls);
        let mut raw_answer = None;
        for _ in 0..settings.raw_calls {
            let at = Instant::now();
            raw_answer = Some(enrollment_stats_raw(&mut conn, range).await?);
            raw.push(at.elapsed());
        }
        print_row(name, "raw tables", &mut raw);
        if let Some(raw_answer) = raw_answer {
            print_agreement(name, &first, &raw_answer);
        }
    }
    Ok(())
}

/// The first and last activity of each kind, so the range can be seen to cover the data.
async fn data_span(conn: &mut DbConn) -> anyhow::Result<String> {
    let query = "SELECT 'enrolled ' || MIN(enrolled_at) || ' .. ' || MAX(enrolled_at) \
                 || '; submitted ' || (SELECT MIN(submitted_at) || ' .. ' || MAX(submitted_at) \
                 FROM exercise_submissions) FROM enrollments";
    let span: Option<String> =
        db_run!(conn => sql::<diesel::sql_types::Nullable<Text>>(query).get_result(conn).await)?;
    Ok(span.unwrap_or_else(|| "no data".to_owned()))
}

fn print_row(range: &str, method: &str, samples: &mut [Duration]) {
    samples.sort();
    println!(
        "| {range} | {method} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
        samples.len(),
        ms(percentile(samples, 0.50)),
        ms(percentile(samples, 0.90)),
        ms(percentile(samples, 0.99)),
        ms(samples.last().copied().unwrap_or_default()),
    );
}

fn print_agreement(range: &str, rollup: &EnrollmentStats, raw: &EnrollmentStats) {
    println!(
        "\n{range}: rollup {} the raw query ({} enrollments, {} completions, {} active learners, \
         {} days)\n",
        if rollup == raw {
            "equals"
        } else {
            "DIFFERS FROM"
        },
        raw.total_enrollments,
        raw.total_completions,
        raw.active_learners,
        raw.days.len()
    );
}

/// Nearest rank of sorted samples (with 50 samples, p99 is the slowest).
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}
