//! EnrollmentStats: enrollments and completions per UTC day and distinct active learners over
//! `[from, to)`, in three statements that each range-scan one date index.
use std::collections::BTreeMap;

use chrono::{NaiveDate, NaiveDateTime};
use diesel::{dsl::sql, sql_types};
use diesel_async::RunQueryDsl;
use learnhub_db::{DbConn, db_run};

use crate::{domain::StatsRange, models::enrollment::Enrollment};

/// One UTC day of the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyCount {
    pub day: NaiveDate,
    pub enrollments: i64,
    pub completions: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentStats {
    /// Every day the range touches, in order, zeros included (a chart needs no gap filling).
    pub days: Vec<DailyCount>,
    pub total_enrollments: i64,
    pub total_completions: i64,
    pub active_learners: i64,
}

pub async fn enrollment_stats(
    conn: &mut DbConn,
    range: StatsRange,
) -> diesel::QueryResult<EnrollmentStats> {
    let enrolled = Enrollment::enrolled_per_day(conn, range.from, range.to).await?;
    let completed = Enrollment::completed_per_day(conn, range.from, range.to).await?;
    let active_learners = active_learners(conn, range.from, range.to).await?;
    Ok(assemble(range, &enrolled, &completed, active_learners))
}

/// Learners who enrolled, completed a course, completed a lesson or submitted an exercise in
/// `[from, to)`: one statement, a UNION of four range scans on the date indexes
/// (idx_enrollments_enrolled_at, idx_enrollments_completed_at, idx_lesson_progress_completed_at
/// with the enrollments primary key, idx_exercise_submissions_submitted_at). It reads three tables,
/// so it lives here rather than with one of them. The SQL is the same on both backends; the
/// binds go through diesel, which writes `$n` or `?` as the backend wants.
async fn active_learners(
    conn: &mut DbConn,
    from: NaiveDateTime,
    to: NaiveDateTime,
) -> diesel::QueryResult<i64> {
    db_run!(conn => {
        let query = sql::<sql_types::BigInt>(
            "SELECT COUNT(*) FROM (\
             SELECT user_id FROM enrollments WHERE enrolled_at >= ",
        )
        .bind::<sql_types::Timestamp, _>(from)
        .sql(" AND enrolled_at < ")
        .bind::<sql_types::Timestamp, _>(to)
        .sql(" UNION SELECT user_id FROM enrollments WHERE completed_at >= ")
        .bind::<sql_types::Timestamp, _>(from)
        .sql(" AND completed_at < ")
        .bind::<sql_types::Timestamp, _>(to)
        .sql(
            " UNION SELECT e.user_id FROM lesson_progress p \
             JOIN enrollments e ON e.id = p.enrollment_id WHERE p.completed_at >= ",
        )
        .bind::<sql_types::Timestamp, _>(from)
        .sql(" AND p.completed_at < ")
        .bind::<sql_types::Timestamp, _>(to)
        .sql(" UNION SELECT user_id FROM exercise_submissions WHERE submitted_at >= ")
        .bind::<sql_types::Timestamp, _>(from)
        .sql(" AND submitted_at < ")
        .bind::<sql_types::Timestamp, _>(to)
        .sql(") active");
        query.get_result(conn).await
    })
}

fn assemble(
    range: StatsRange,
    enrolled: &[(NaiveDate, i64)],
    completed: &[(NaiveDate, i64)],
    active_learners: i64,
) -> EnrollmentStats {
    let mut days: BTreeMap<NaiveDate, DailyCount> = BTreeMap::new();
    let last = last_day(range.to);
    let mut day = range.from.date();
    while day <= last {
        days.insert(
            day,
            DailyCount {
                day,
                enrollments: 0,
                completions: 0,
            },
        );
        match day.succ_opt() {
            Some(next) => day = next,
            None => break,
        }
    }
    for (day, n) in enrolled {
        days.entry(*day)
            .or_insert(DailyCount {
                day: *day,
                enrollments: 0,
                completions: 0,
            })
            .enrollments += n;
    }
    for (day, n) in completed {
        days.entry(*day)
            .or_insert(DailyCount {
                day: *day,
                enrollments: 0,
                completions: 0,
            })
            .completions += n;
    }
    EnrollmentStats {
        total_enrollments: enrolled.iter().map(|(_, n)| n).sum(),
        total_completions: completed.iter().map(|(_, n)| n).sum(),
        days: days.into_values().collect(),
        active_learners,
    }
}

/// The last day `[.., to)` touches: the day before `to` when `to` is a midnight.
fn last_day(to: NaiveDateTime) -> NaiveDate {
    if to.time() == chrono::NaiveTime::MIN {
        to.date().pred_opt().unwrap_or(to.date())
    } else {
        to.date()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    #[test]
    fn every_day_of_the_range_appears_once() {
        let range = StatsRange {
            from: at("2026-01-30 12:00:00"),
            to: at("2026-02-02 00:00:00"),
        };
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let stats = assemble(range, &[(d("2026-01-31"), 3)], &[(d("2026-02-01"), 1)], 2);
        let days: Vec<_> = stats
            .days
            .iter()
            .map(|c| (c.day.to_string(), c.enrollments, c.completions))
            .collect();
        assert_eq!(
            days,
            [
                ("2026-01-30".into(), 0, 0),
                ("2026-01-31".into(), 3, 0),
                ("2026-02-01".into(), 0, 1)
            ]
        );
        assert_eq!(
            (
                stats.total_enrollments,
                stats.total_completions,
                stats.active_learners
            ),
            (3, 1, 2)
        );
    }
}
