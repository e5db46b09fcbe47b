//! EnrollmentStats: enrollments and completions per UTC day and distinct active learners over
//! `[from, to)`, from the daily rollup for the whole days and the partial days at either end
//! (docs/enrollment-rollup.md); [`enrollment_stats_raw`] answers from the raw tables alone, for
//! the tests and as the definition.
use std::collections::BTreeMap;

use chrono::{Days, NaiveDate, NaiveDateTime};
use diesel::{ExpressionMethods, dsl::sql, sql_types, upsert::excluded};
use diesel_async::RunQueryDsl;
use learnhub_db::{DbConn, db_run};
use roaring::RoaringTreemap;

use crate::{domain::StatsRange, models::enrollment::Enrollment, schema::learner_day_bitmaps};

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

/// EnrollmentStats in at most three statements whatever the range: (1) the rollup's counts,
/// versions and still-valid learner bitmaps of the whole days, with the raw counts of the partial
/// days; (2) the learners of the partial days (from `learner_days`' first and last activity
/// times, or from the raw tables for a range inside one day), with the learner sets of the days
/// whose bitmap is missing or stale; (3) the rebuilt bitmaps, stored for the next call.
/// Bitmaps rather than `COUNT(DISTINCT)` over `learner_days`: a year at scale 1 is millions of
/// (day, learner) pairs, the union of 366 bitmaps a few megabytes; exact, unlike HyperLogLog.
pub async fn enrollment_stats(
    conn: &mut DbConn,
    range: StatsRange,
) -> diesel::QueryResult<EnrollmentStats> {
    let split = RangeSplit::of(range);
    let mut enrolled = Vec::new();
    let mut completed = Vec::new();
    let mut learners = RoaringTreemap::new();
    let mut stale = BTreeMap::new();
    for (day, enrollments, completions, version, bitmap) in day_rows(conn, &split).await? {
        enrolled.push((day, enrollments));
        completed.push((day, completions));
        match (version, bitmap) {
            (Some(_), Some(bitmap)) => learners |= decode(&bitmap)?,
            (Some(version), None) => {
                stale.insert(day, (version, RoaringTreemap::new()));
            }
            // a partial day's raw counts
            (None, _) => {}
        }
    }
    if split.has_partial_days() || !stale.is_empty() {
        for (day, user_id) in partial_and_stale_learners(conn, &split, &stale).await? {
            let user_id = user_id_bits(user_id)?;
            match day {
                None => {
                    learners.insert(user_id);
                }
                Some(day) => {
                    if let Some((_, bitmap)) = stale.get_mut(&day) {
                        bitmap.insert(user_id);
                    }
                }
            }
        }
        for (_, bitmap) in stale.values() {
            learners |= bitmap;
        }
        store_bitmaps(conn, stale).await?;
    }
    let active_learners = i64::try_from(learners.len()).unwrap_or(i64::MAX);
    Ok(assemble(range, &enrolled, &completed, active_learners))
}

/// The answer from the raw tables alone, in three statements that each range-scan one date
/// index: what the rollup must equal (the rollup tests compare them), and 4 s for a year at
/// scale 1.
pub async fn enrollment_stats_raw(
    conn: &mut DbConn,
    range: StatsRange,
) -> diesel::QueryResult<EnrollmentStats> {
    let enrolled = Enrollment::enrolled_per_day(conn, range.from, range.to).await?;
    let completed = Enrollment::completed_per_day(conn, range.from, range.to).await?;
    let active_learners = active_learners(conn, range.from, range.to).await?;
    Ok(assemble(range, &enrolled, &completed, active_learners))
}

/// A range cut at midnights: the whole UTC days `[first, end)` the rollup answers for, and the
/// partial days at either end (an empty one is `(t, t)`), whose counts the raw tables answer for.
/// A partial day's learners come from its `learner_days` when it runs to or from a midnight
/// (`[from, next midnight)`: `last_at >= from`; `[midnight, to)`: `first_at < to`), and from the
/// raw tables, `raw_learners`, only for a range inside one day touching neither midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RangeSplit {
    first: NaiveDate,
    end: NaiveDate,
    partial: [(NaiveDateTime, NaiveDateTime); 2],
    raw_learners: (NaiveDateTime, NaiveDateTime),
}

impl RangeSplit {
    fn of(range: StatsRange) -> Self {
        let StatsRange { from, to } = range;
        let first = if from.time() == chrono::NaiveTime::MIN {
            Some(from.date())
        } else {
            from.date().checked_add_days(Days::new(1))
        };
        match first {
            // Whole days (maybe none) between a head ending at a midnight and a tail starting at
            // one.
            Some(first) if first <= to.date() => Self {
                first,
                end: to.date(),
                partial: [
                    (from, first.and_time(chrono::NaiveTime::MIN)),
                    (to.date().and_time(chrono::NaiveTime::MIN), to),
                ],
                raw_learners: (to, to),
            },
            // Inside one day, touching neither midnight: all of it from the raw tables.
            _ => Self {
                first: from.date(),
                end: from.date(),
                partial: [(from, to), (to, to)],
                raw_learners: (from, to),
            },
        }
    }

    fn has_partial_days(&self) -> bool {
        self.partial.iter().any(|(from, to)| from < to)
    }

    /// The `learner_days` day range `[day, day_end)` of a partial day read through its bounds:
    /// the head's day unless the head is empty or read raw; `(from, from)` when not.
    fn head_days(&self) -> (NaiveDate, NaiveDate) {
        let (from, to) = self.partial[0];
        self.bounded_day(from, to)
    }

    /// As [`Self::head_days`], for the tail.
    fn tail_days(&self) -> (NaiveDate, NaiveDate) {
        let (from, to) = self.partial[1];
        self.bounded_day(from, to)
    }

    /// How the enrollments and completions of partial day `i` (0: head, 1: tail) are counted.
    fn counts(&self, i: usize) -> PartialCounts {
        let (from, to) = self.partial[i];
        let day = from.date();
        let midnight = day.and_time(chrono::NaiveTime::MIN);
        let empty = PartialCounts {
            direct: (to, to),
            total_days: (day, day),
            complement: (to, to),
        };
        let next = match day.succ_opt() {
            Some(next) => next,
            None => {
                return PartialCounts {
                    direct: (from, to),
                    ..empty
                };
            }
        };
        let inside = from != midnight && to != next.and_time(chrono::NaiveTime::MIN);
        if from >= to || inside || to - from <= chrono::Duration::hours(12) {
            return PartialCounts {
                direct: (from, to),
                ..empty
            };
        }
        PartialCounts {
            direct: (to, to),
            total_days: (day, next),
            complement: if from == midnight {
                (to, next.and_time(chrono::NaiveTime::MIN))
            } else {
                (midnight, from)
            },
        }
    }

    fn bounded_day(&self, from: NaiveDateTime, to: NaiveDateTime) -> (NaiveDate, NaiveDate) {
        let day = from.date();
        let raw = self.raw_learners.0 < self.raw_learners.1;
        match day.succ_opt() {
            Some(next) if from < to && !raw => (day, next),
            _ => (day, day),
        }
    }
}

/// How a partial day's enrollments and completions are counted: raw over `direct`, or, when the
/// partial day is most of the day, the day's `enrollment_days` row (`total_days`, one day or
/// none) minus raw over the rest of the day, `complement`. Either way at most half a day of rows
/// is scanned (today's completions at scale 1 are ~14k index entries, 7 ms); unused ranges are
/// empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PartialCounts {
    direct: (NaiveDateTime, NaiveDateTime),
    total_days: (NaiveDate, NaiveDate),
    complement: (NaiveDateTime, NaiveDateTime),
}

/// Appends ` column >= from AND column < to` to a `sql()` query under construction.
macro_rules! in_range {
    ($query:expr, $column:literal, $range:expr) => {
        $query
            .sql(concat!(" ", $column, " >= "))
            .bind::<sql_types::Timestamp, _>($range.0)
            .sql(concat!(" AND ", $column, " < "))
            .bind::<sql_types::Timestamp, _>($range.1)
    };
}

/// `(day, enrollments, completions, learners_version, learners)`: a whole day's rollup (its
/// bitmap only if still valid), or a partial day's raw counts (no version).
type DayRow = (NaiveDate, i64, i64, Option<i64>, Option<Vec<u8>>);

/// Statement (1). The partial days' counts come as several rows per day ([`PartialCounts`]: the
/// day's total, minus counts of the rest of the day, or plain counts) and add up in `assemble`.
async fn day_rows(conn: &mut DbConn, split: &RangeSplit) -> diesel::QueryResult<Vec<DayRow>> {
    let [head, tail] = [split.counts(0), split.counts(1)];
    db_run!(conn => {
        let query = sql::<(
            sql_types::Date,
            sql_types::BigInt,
            sql_types::BigInt,
            sql_types::Nullable<sql_types::BigInt>,
            sql_types::Nullable<sql_types::Binary>,
        )>(
            "SELECT d.day, d.enrollments, d.completions, d.learners_version, b.learners \
             FROM enrollment_days d LEFT JOIN learner_day_bitmaps b \
             ON b.day = d.day AND b.version = d.learners_version AND b.day >= ",
        )
        .bind::<sql_types::Date, _>(split.first)
        .sql(" AND b.day < ")
        .bind::<sql_types::Date, _>(split.end)
        .sql(" WHERE d.day >= ")
        .bind::<sql_types::Date, _>(split.first)
        .sql(" AND d.day < ")
        .bind::<sql_types::Date, _>(split.end);
        const TOTAL: &str = " UNION ALL SELECT day, enrollments, completions, NULL, NULL \
             FROM enrollment_days WHERE day >= ";
        const ENROLLED: &str =
            " UNION ALL SELECT date(enrolled_at), COUNT(*), 0, NULL, NULL FROM enrollments WHERE";
        const COMPLETED: &str =
            " UNION ALL SELECT date(completed_at), 0, COUNT(*), NULL, NULL FROM enrollments WHERE";
        const NOT_ENROLLED: &str =
            " UNION ALL SELECT date(enrolled_at), -COUNT(*), 0, NULL, NULL FROM enrollments WHERE";
        const NOT_COMPLETED: &str =
            " UNION ALL SELECT date(completed_at), 0, -COUNT(*), NULL, NULL FROM enrollments WHERE";
        let query = query
            .sql(TOTAL)
            .bind::<sql_types::Date, _>(head.total_days.0)
            .sql(" AND day < ")
            .bind::<sql_types::Date, _>(head.total_days.1)
            .sql(TOTAL)
            .bind::<sql_types::Date, _>(tail.total_days.0)
            .sql(" AND day < ")
            .bind::<sql_types::Date, _>(tail.total_days.1);
        // One counting SELECT per partial day (head, then tail), grouped by the day it counts.
        macro_rules! per_partial_day {
            ($query:expr, $select:expr, $column:literal, $part:ident) => {{
                let query = in_range!($query.sql($select), $column, head.$part)
                    .sql(concat!(" GROUP BY date(", $column, ")"));
                in_range!(query.sql($select), $column, tail.$part)
                    .sql(concat!(" GROUP BY date(", $column, ")"))
            }};
        }
        let query = per_partial_day!(query, ENROLLED, "enrolled_at", direct);
        let query = per_partial_day!(query, COMPLETED, "completed_at", direct);
        let query = per_partial_day!(query, NOT_ENROLLED, "enrolled_at", complement);
        let query = per_partial_day!(query, NOT_COMPLETED, "completed_at", complement);
        query.load(conn).await
    })
}

/// Statement (2): `(None, user_id)` for a learner active in a partial day, `(Some(day), user_id)`
/// for `learner_days` from the first to the last stale day (usually only today, whose version
/// moves with every write; the caller keeps the stale days). A partial head or tail day is read
/// from its `learner_days` rows, whose `first_at`/`last_at` the triggers keep exact: a day's
/// few thousand rows rather than its raw activity (today's ~22k completed lessons at scale 1, each
/// joined to its enrollment for the learner). A range inside one day is read raw (the UNION of
/// [`active_learners`]); the other ranges are empty then.
async fn partial_and_stale_learners(
    conn: &mut DbConn,
    split: &RangeSplit,
    stale: &BTreeMap<NaiveDate, (i64, RoaringTreemap)>,
) -> diesel::QueryResult<Vec<(Option<NaiveDate>, i64)>> {
    let raw = split.raw_learners;
    let (head_day, head_end) = split.head_days();
    let (tail_day, tail_end) = split.tail_days();
    // No stale day: an empty day range.
    let (stale_first, stale_last) = match (stale.keys().next(), stale.keys().next_back()) {
        (Some(first), Some(last)) => (*first, *last),
        _ => (split.first, split.first.pred_opt().unwrap_or(split.first)),
    };
    db_run!(conn => {
        let query = sql::<(sql_types::Nullable<sql_types::Date>, sql_types::BigInt)>(
            "SELECT CAST(NULL AS DATE) AS day, user_id FROM enrollments WHERE",
        );
        const COMPLETED: &str = " UNION SELECT NULL, user_id FROM enrollments WHERE";
        const PROGRESSED: &str = " UNION SELECT NULL, e.user_id FROM lesson_progress p \
             JOIN enrollments e ON e.id = p.enrollment_id WHERE";
        const SUBMITTED: &str = " UNION SELECT NULL, user_id FROM exercise_submissions WHERE";
        let query = in_range!(query, "enrolled_at", raw);
        let query = in_range!(query.sql(COMPLETED), "completed_at", raw);
        let query = in_range!(query.sql(PROGRESSED), "p.completed_at", raw);
        let query = in_range!(query.sql(SUBMITTED), "submitted_at", raw)
            .sql(" UNION ALL SELECT NULL, user_id FROM learner_days WHERE day >= ")
            .bind::<sql_types::Date, _>(head_day)
            .sql(" AND day < ")
            .bind::<sql_types::Date, _>(head_end)
            .sql(" AND last_at >= ")
            .bind::<sql_types::Timestamp, _>(split.partial[0].0)
            .sql(" UNION ALL SELECT NULL, user_id FROM learner_days WHERE day >= ")
            .bind::<sql_types::Date, _>(tail_day)
            .sql(" AND day < ")
            .bind::<sql_types::Date, _>(tail_end)
            .sql(" AND first_at < ")
            .bind::<sql_types::Timestamp, _>(split.partial[1].1)
            .sql(" UNION ALL SELECT day, user_id FROM learner_days WHERE day >= ")
            .bind::<sql_types::Date, _>(stale_first)
            .sql(" AND day <= ")
            .bind::<sql_types::Date, _>(stale_last);
        query.load(conn).await
    })
}

/// One row of `learner_day_bitmaps`.
#[derive(diesel::Insertable)]
#[diesel(table_name = learner_day_bitmaps)]
struct DayLearners {
    day: NaiveDate,
    version: i64,
    learners: Vec<u8>,
}

/// Statement (3), when a bitmap was rebuilt. Each is tagged with the version read in statement
/// (1), before its set was read: a write committed in between moved the day's version on, so the
/// bitmap, whichever state it holds, is never taken as valid. Two callers racing may store an
/// older version over a newer one; that costs a rebuild, not a wrong answer.
async fn store_bitmaps(
    conn: &mut DbConn,
    rebuilt: BTreeMap<NaiveDate, (i64, RoaringTreemap)>,
) -> diesel::QueryResult<()> {
    if rebuilt.is_empty() {
        return Ok(());
    }
    let mut rows = Vec::with_capacity(rebuilt.len());
    for (day, (version, bitmap)) in rebuilt {
        let mut learners = Vec::with_capacity(bitmap.serialized_size());
        bitmap
            .serialize_into(&mut learners)
            .map_err(|err| diesel::result::Error::SerializationError(Box::new(err)))?;
        rows.push(DayLearners {
            day,
            version,
            learners,
        });
    }
    match conn {
        DbConn::Postgres(conn) => {
            diesel::insert_into(learner_day_bitmaps::table)
                .values(rows)
                .on_conflict(learner_day_bitmaps::day)
                .do_update()
                .set((
                    learner_day_bitmaps::version.eq(excluded(learner_day_bitmaps::version)),
                    learner_day_bitmaps::learners.eq(excluded(learner_day_bitmaps::learners)),
                ))
                .execute(&mut **conn)
                .await?
        }
        // diesel has no multi-row upsert for SQLite (its batch INSERT is a statement per row in
        // a transaction), so one INSERT OR REPLACE with a placeholder triple per day, run
        // synchronously on the connection's thread like `db_insert_many!`.
        DbConn::Sqlite(conn) => {
            conn.spawn_blocking(move |conn| {
                let values = vec!["(?, ?, ?)"; rows.len()].join(", ");
                let mut query = diesel::sql_query(format!(
                    "INSERT OR REPLACE INTO learner_day_bitmaps (day, version, learners) \
                     VALUES {values}"
                ))
                .into_boxed::<diesel::sqlite::Sqlite>();
                for row in rows {
                    query = query
                        .bind::<sql_types::Date, _>(row.day)
                        .bind::<sql_types::BigInt, _>(row.version)
                        .bind::<sql_types::Binary, _>(row.learners);
                }
                diesel::RunQueryDsl::execute(query, conn)
            })
            .await?
        }
    };
    Ok(())
}

fn decode(bitmap: &[u8]) -> diesel::QueryResult<RoaringTreemap> {
    RoaringTreemap::deserialize_from(bitmap)
        .map_err(|err| diesel::result::Error::DeserializationError(Box::new(err)))
}

/// Ids are positive (identity columns), so they fit the bitmap's `u64`.
fn user_id_bits(user_id: i64) -> diesel::QueryResult<u64> {
    u64::try_from(user_id).map_err(|err| diesel::result::Error::DeserializationError(Box::new(err)))
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
    fn ranges_split_into_whole_days_and_partial_ends() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let split = |from: &str, to: &str| {
            RangeSplit::of(StatsRange {
                from: at(from),
                to: at(to),
            })
        };
        let midnights = split("2026-01-30 00:00:00", "2026-02-02 00:00:00");
        assert_eq!(
            (midnights.first, midnights.end),
            (d("2026-01-30"), d("2026-02-02"))
        );
        assert!(!midnights.has_partial_days());

        let ragged = split("2026-01-30 12:00:00", "2026-02-02 06:00:00");
        assert_eq!(
            (ragged.first, ragged.end),
            (d("2026-01-31"), d("2026-02-02"))
        );
        assert_eq!(
            ragged.partial,
            [
                (at("2026-01-30 12:00:00"), at("2026-01-31 00:00:00")),
                (at("2026-02-02 00:00:00"), at("2026-02-02 06:00:00"))
            ]
        );

        assert_eq!(ragged.head_days(), (d("2026-01-30"), d("2026-01-31")));
        assert_eq!(ragged.tail_days(), (d("2026-02-02"), d("2026-02-03")));
        assert!(ragged.raw_learners.0 >= ragged.raw_learners.1);

        // Most of a day: the day's total minus the rest; a short partial day: counted directly.
        let late = split("2026-01-30 02:00:00", "2026-02-02 23:00:00");
        assert_eq!(
            late.counts(0),
            PartialCounts {
                direct: (at("2026-01-31 00:00:00"), at("2026-01-31 00:00:00")),
                total_days: (d("2026-01-30"), d("2026-01-31")),
                complement: (at("2026-01-30 00:00:00"), at("2026-01-30 02:00:00")),
            }
        );
        assert_eq!(
            late.counts(1).complement,
            (at("2026-02-02 23:00:00"), at("2026-02-03 00:00:00"))
        );
        assert_eq!(
            ragged.counts(1).direct,
            (at("2026-02-02 00:00:00"), at("2026-02-02 06:00:00"))
        );
        assert_eq!(ragged.counts(1).total_days.0, ragged.counts(1).total_days.1);

        // Across a midnight with no whole day: two partial days, both read through their bounds.
        let short = split("2026-01-30 12:00:00", "2026-01-31 11:00:00");
        assert_eq!((short.first, short.end), (d("2026-01-31"), d("2026-01-31")));
        assert_eq!(short.head_days(), (d("2026-01-30"), d("2026-01-31")));
        assert_eq!(short.tail_days(), (d("2026-01-31"), d("2026-02-01")));

        // From a midnight to inside the same day: a tail only.
        let morning = split("2026-01-30 00:00:00", "2026-01-30 11:00:00");
        assert_eq!(morning.head_days().0, morning.head_days().1);
        assert_eq!(morning.tail_days(), (d("2026-01-30"), d("2026-01-31")));

        // Inside one day, touching neither midnight: all raw, no rollup days, no bounds.
        let inside = split("2026-01-30 09:00:00", "2026-01-30 11:00:00");
        assert_eq!(inside.first, inside.end);
        assert_eq!(
            inside.raw_learners,
            (at("2026-01-30 09:00:00"), at("2026-01-30 11:00:00"))
        );
        assert_eq!(inside.head_days().0, inside.head_days().1);
        assert_eq!(inside.tail_days().0, inside.tail_days().1);
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
