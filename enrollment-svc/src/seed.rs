//! Deterministic learner data: `enrollment-svc seed --users N --enrollments M --progress P
//! --submissions S` for scale tests, and the monolith's demo learners. Learner `i` is always
//! `learner{i}@example.com` with the same courses, progress and submissions (given the same
//! catalog), so a seed can be rerun or extended: learners whose email exists are skipped with
//! everything of theirs. Courses, lessons and exercises are read from catalog-svc.
use std::collections::HashMap;

use chrono::{Duration, NaiveDateTime};
use futures::{StreamExt, TryStreamExt, stream};
use indicatif::{ProgressBar, ProgressStyle};
use learnhub_db::{Backend, Db, SplitMix64, db_run};
use learnhub_kit::time;

use crate::{
    catalog_client::CatalogClient,
    domain::{EnrollmentStatus, Role},
    error::{Error, Result},
    models::{
        enrollment::{Enrollment, NewEnrollment},
        exercise_submission::{NewSubmission, Submission},
        lesson_progress::{LessonProgress, NewLessonProgress},
        user::{NewUser, User},
    },
    schema::users,
};

/// What the monolith seeds into an empty enrollment database.
const DEMO_PLAN: Plan = Plan {
    users: 20,
    enrollments: 60,
    progress: 150,
    submissions: 80,
};

/// Learners per chunk: each chunk is a handful of multi-row statements per table.
const USERS_PER_CHUNK: u64 = 1_000;
/// Concurrent catalog-svc calls while reading the catalog.
const CATALOG_CONCURRENCY: usize = 16;
/// Lessons whose exercises are read: enough variety for submissions without one call per
/// lesson of a large catalog.
const EXERCISE_LESSONS: usize = 200;
/// Chunks written at once on Postgres (each on its own pooled connection).
pub const POSTGRES_WRITERS: usize = 4;
/// How long an unfinished learner has been working through a course (days).
const LEARNING_DAYS: i64 = 60;
/// Activity is spread over the year before the seed ran.
const HISTORY_DAYS: u64 = 365;

/// How much to generate. Totals are spread evenly (enrollments and submissions over learners,
/// progress over enrollments); a learner has at most one enrollment per published course and
/// an enrollment at most one progress row per lesson, so very high ratios are capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub users: u64,
    pub enrollments: u64,
    pub progress: u64,
    pub submissions: u64,
}

/// What a seed run inserted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeedReport {
    pub users: u64,
    pub enrollments: u64,
    pub progress: u64,
    pub submissions: u64,
}

impl SeedReport {
    fn add(self, other: Self) -> Self {
        Self {
            users: self.users + other.users,
            enrollments: self.enrollments + other.enrollments,
            progress: self.progress + other.progress,
            submissions: self.submissions + other.submissions,
        }
    }

    pub fn rows(&self) -> u64 {
        self.users + self.enrollments + self.progress + self.submissions
    }
}

/// The published part of the catalog the seed draws from.
#[derive(Debug, Clone)]
struct CatalogSnapshot {
    /// Published courses in id order with their lesson ids in position order.
    courses: Vec<(i64, Vec<i64>)>,
    exercises: Vec<i64>,
}

impl CatalogSnapshot {
    /// Pages through the published courses, then reads each course's lessons and the
    /// exercises of some lessons, a few calls at a time.
    async fn load(catalog: &CatalogClient) -> Result<Self> {
        let ids = catalog.published_course_ids().await?;
        let mut courses: Vec<(i64, Vec<i64>)> = stream::iter(ids)
            .map(|id| async move {
                Ok::<_, Error>(catalog.course(id).await?.map(|c| (c.id, c.lesson_ids)))
            })
            .buffer_unordered(CATALOG_CONCURRENCY)
            .try_filter_map(|found| async move { Ok(found) })
            .try_collect()
            .await?;
        courses.sort_by_key(|(id, _)| *id);
        let lessons: Vec<i64> = courses
            .iter()
            .flat_map(|(_, lessons)| lessons.iter().copied())
            .take(EXERCISE_LESSONS)
            .collect();
        let mut exercises: Vec<i64> = stream::iter(lessons)
            .map(|lesson| async move { catalog.exercise_ids(lesson).await })
            .buffer_unordered(CATALOG_CONCURRENCY)
            .try_concat()
            .await?;
        exercises.sort_unstable();
        Ok(Self { courses, exercises })
    }
}

/// Seeds the demo learners when there is no user yet; `None` when there already were some.
pub async fn demo(db: &Db, catalog: &CatalogClient) -> Result<Option<SeedReport>> {
    let mut pooled = db.conn().await?;
    let conn = &mut pooled;
    let any: Option<i64> = db_run!(conn => {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        users::table.select(users::id).first(conn).await.optional()
    })?;
    drop(pooled);
    if any.is_some() {
        return Ok(None);
    }
    run(db, catalog, DEMO_PLAN, false).await.map(Some)
}

/// Ensures learners 1..=`plan.users` exist with their enrollments, progress and submissions.
pub async fn run(
    db: &Db,
    catalog: &CatalogClient,
    plan: Plan,
    progress: bool,
) -> Result<SeedReport> {
    let snapshot = CatalogSnapshot::load(catalog).await?;
    if snapshot.courses.is_empty() {
        return Err(Error::FailedPrecondition(
            "catalog-svc has no published course to enroll in; seed the catalog first".into(),
        ));
    }
    let bar = if progress {
        ProgressBar::new(plan.users).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} learners {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        )
    } else {
        ProgressBar::hidden()
    };
    let generator = Generator::new(plan, &snapshot, time::now());
    let chunks = (0..plan.users.div_ceil(USERS_PER_CHUNK)).map(|n| {
        let start = n * USERS_PER_CHUNK + 1;
        start..=(start + USERS_PER_CHUNK - 1).min(plan.users)
    });
    // Postgres takes several writers at once; SQLite has one writer, so more would only wait.
    let writers = match db.backend() {
        Backend::Postgres => POSTGRES_WRITERS,
        Backend::Sqlite => 1,
    };
    let report = stream::iter(chunks)
        .map(|range| {
            let (generator, bar) = (&generator, &bar);
            async move {
                let learners = range.end() - range.start() + 1;
                let report = seed_chunk(db, generator, range).await?;
                bar.inc(learners);
                Ok::<_, Error>(report)
            }
        })
        .buffer_unordered(writers)
        .try_fold(SeedReport::default(), |total, chunk| async move {
            Ok(total.add(chunk))
        })
        .await?;
    bar.finish_and_clear();
    Ok(report)
}

/// Learner `i`'s data as a pure function of `i`, the plan and the catalog.
struct Generator<'a> {
    plan: Plan,
    snapshot: &'a CatalogSnapshot,
    now: NaiveDateTime,
}

/// One planned enrollment, before it has an id.
struct PlannedEnrollment {
    row: NewEnrollment,
    lessons_done: usize,
    course: usize,
}

impl<'a> Generator<'a> {
    fn new(plan: Plan, snapshot: &'a CatalogSnapshot, now: NaiveDateTime) -> Self {
        Self {
            plan,
            snapshot,
            now,
        }
    }

    fn email(i: u64) -> String {
        format!("learner{i}@example.com")
    }

    fn user(&self, i: u64) -> NewUser {
        let mut rng = SplitMix64::new(i);
        let email = Self::email(i);
        NewUser {
            email_normalized: email.clone(),
            email,
            display_name: format!("Learner {i}"),
            role: Role::Learner,
            created_at: self.ago(&mut rng, HISTORY_DAYS + 30),
        }
    }

    /// A moment in the last `days` days.
    fn ago(&self, rng: &mut SplitMix64, days: u64) -> NaiveDateTime {
        self.now - Duration::seconds(rng.below(days * 86_400) as i64)
    }

    /// `total` spread over `n` slots: slot `k` (0-based) gets this many.
    fn share(total: u64, n: u64, k: u64) -> u64 {
        total
            .checked_div(n)
            .map_or(0, |each| each + u64::from(k < total % n))
    }

    /// Index of learner `i`'s first enrollment among all planned enrollments.
    fn first_enrollment_index(&self, i: u64) -> u64 {
        let n = self.plan.users.max(1);
        let k = i - 1;
        k * (self.plan.enrollments / n) + k.min(self.plan.enrollments % n)
    }

    fn enrollments(&self, i: u64, user_id: i64) -> Vec<PlannedEnrollment> {
        let courses = &self.snapshot.courses;
        let mut rng = SplitMix64::new(i ^ 0x656e_726f_6c6c);
        let count =
            Self::share(self.plan.enrollments, self.plan.users, i - 1).min(courses.len() as u64);
        let first_course = rng.below(courses.len() as u64) as usize;
        let first_index = self.first_enrollment_index(i);
        (0..count)
            .map(|t| {
                let course = (first_course + t as usize) % courses.len();
                let (course_id, lessons) = &courses[course];
                let planned =
                    Self::share(self.plan.progress, self.plan.enrollments, first_index + t);
                let lessons_done = (planned as usize).min(lessons.len());
                let enrolled_at = self.ago(&mut rng, HISTORY_DAYS);
                let status = if !lessons.is_empty() && lessons_done == lessons.len() {
                    EnrollmentStatus::Completed
                } else if rng.below(10) == 0 {
                    EnrollmentStatus::Dropped
                } else {
                    EnrollmentStatus::Active
                };
                let completed_at = (status == EnrollmentStatus::Completed).then(|| {
                    let days = LEARNING_DAYS as u64;
                    (enrolled_at + Duration::hours(1 + rng.below(days * 24) as i64)).min(self.now)
                });
                PlannedEnrollment {
                    row: NewEnrollment {
                        user_id,
                        course_id: *course_id,
                        status,
                        enrolled_at,
                        completed_at,
                        updated_at: completed_at.unwrap_or(enrolled_at),
                    },
                    lessons_done,
                    course,
                }
            })
            .collect()
    }

    /// The first `lessons_done` lessons of the course, completed in order after enrolling: a
    /// completed enrollment's last lesson at its completion, an active one's spread over the
    /// weeks after enrolling as if the rest of the course were still to come.
    fn progress(&self, enrollment_id: i64, planned: &PlannedEnrollment) -> Vec<NewLessonProgress> {
        let (_, lessons) = &self.snapshot.courses[planned.course];
        let start = planned.row.enrolled_at;
        let (end, steps) = match planned.row.completed_at {
            Some(completed_at) => (completed_at, planned.lessons_done),
            None => (
                (start + Duration::days(LEARNING_DAYS)).min(self.now),
                lessons.len() + 1,
            ),
        };
        let span = (end - start).num_seconds().max(1);
        let steps = steps.max(1) as i64;
        lessons[..planned.lessons_done]
            .iter()
            .enumerate()
            .map(|(n, lesson_id)| {
                let at = start + Duration::seconds(span * (n as i64 + 1) / steps);
                NewLessonProgress {
                    enrollment_id,
                    lesson_id: *lesson_id,
                    completed: true,
                    completed_at: Some(at),
                    updated_at: at,
                }
            })
            .collect()
    }

    fn submissions(&self, i: u64, user_id: i64) -> Vec<NewSubmission> {
        let exercises = &self.snapshot.exercises;
        if exercises.is_empty() {
            return Vec::new();
        }
        let mut rng = SplitMix64::new(i ^ 0x7375_626d_6974);
        let count = Self::share(self.plan.submissions, self.plan.users, i - 1);
        (0..count)
            .map(|n| {
                let exercise_id = exercises[rng.below(exercises.len() as u64) as usize];
                let score = rng.below(101) as i32;
                NewSubmission {
                    user_id,
                    exercise_id,
                    code: format!("# attempt {n}\nprint(solve({score}))\n"),
                    passed: score >= 60,
                    score,
                    submitted_at: self.ago(&mut rng, HISTORY_DAYS),
                }
            })
            .collect()
    }
}

/// Learners `range` with everything of theirs, on one connection.
async fn seed_chunk(
    db: &Db,
    generator: &Generator<'_>,
    range: std::ops::RangeInclusive<u64>,
) -> Result<SeedReport> {
    let mut report = SeedReport::default();
    let mut conn = db.conn().await?;
    let emails: Vec<String> = range.clone().map(Generator::email).collect();
    let existing: std::collections::HashSet<String> = User::ids_by_email(&mut conn, &emails)
        .await?
        .into_iter()
        .map(|(_, email)| email)
        .collect();
    let new_users: Vec<(u64, NewUser)> = range
        .map(|i| (i, generator.user(i)))
        .filter(|(_, u)| !existing.contains(&u.email_normalized))
        .collect();
    if new_users.is_empty() {
        return Ok(report);
    }
    let rows: Vec<NewUser> = new_users.iter().map(|(_, u)| u.clone()).collect();
    report.users += User::insert_many(&mut conn, &rows).await? as u64;
    let new_emails: Vec<String> = rows.iter().map(|u| u.email_normalized.clone()).collect();
    let ids: HashMap<String, i64> = User::ids_by_email(&mut conn, &new_emails)
        .await?
        .into_iter()
        .map(|(id, email)| (email, id))
        .collect();
    let learners: Vec<(u64, i64)> = new_users
        .iter()
        .filter_map(|(i, u)| ids.get(&u.email_normalized).map(|id| (*i, *id)))
        .collect();

    let planned: Vec<PlannedEnrollment> = learners
        .iter()
        .flat_map(|(i, user_id)| generator.enrollments(*i, *user_id))
        .collect();
    let rows: Vec<NewEnrollment> = planned.iter().map(|p| p.row.clone()).collect();
    report.enrollments += Enrollment::insert_many(&mut conn, &rows).await? as u64;

    let user_ids: Vec<i64> = learners.iter().map(|(_, id)| *id).collect();
    let enrollment_ids: HashMap<(i64, i64), i64> = Enrollment::keys_for_users(&mut conn, &user_ids)
        .await?
        .into_iter()
        .map(|(id, user_id, course_id)| ((user_id, course_id), id))
        .collect();
    let progress: Vec<NewLessonProgress> = planned
        .iter()
        .filter_map(|p| {
            enrollment_ids
                .get(&(p.row.user_id, p.row.course_id))
                .map(|id| generator.progress(*id, p))
        })
        .flatten()
        .collect();
    report.progress += LessonProgress::insert_many(&mut conn, &progress).await? as u64;

    let submissions: Vec<NewSubmission> = learners
        .iter()
        .flat_map(|(i, user_id)| generator.submissions(*i, *user_id))
        .collect();
    report.submissions += Submission::insert_many(&mut conn, &submissions).await? as u64;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> CatalogSnapshot {
        CatalogSnapshot {
            courses: (1..=10)
                .map(|c| (c, (c * 10..c * 10 + 4).collect()))
                .collect(),
            exercises: vec![7, 8, 9],
        }
    }

    #[test]
    fn totals_are_spread_exactly() {
        let total: u64 = (0..7).map(|k| Generator::share(100, 7, k)).sum();
        assert_eq!(total, 100);
        assert_eq!(Generator::share(5, 0, 0), 0);
    }

    #[test]
    fn learners_are_deterministic_and_enroll_once_per_course() {
        let snapshot = snapshot();
        let plan = Plan {
            users: 10,
            enrollments: 35,
            progress: 70,
            submissions: 20,
        };
        let now = time::now();
        let generator = Generator::new(plan, &snapshot, now);
        let mut total = 0;
        let mut lessons = 0;
        for i in 1..=10 {
            let planned = generator.enrollments(i, i as i64);
            let again = generator.enrollments(i, i as i64);
            let courses: std::collections::HashSet<i64> =
                planned.iter().map(|p| p.row.course_id).collect();
            assert_eq!(courses.len(), planned.len());
            assert_eq!(
                planned.iter().map(|p| p.row.course_id).collect::<Vec<_>>(),
                again.iter().map(|p| p.row.course_id).collect::<Vec<_>>()
            );
            for p in &planned {
                let rows = generator.progress(1, p);
                assert_eq!(rows.len(), p.lessons_done);
                assert_eq!(
                    p.row.completed_at.is_some(),
                    p.row.status == EnrollmentStatus::Completed
                );
                assert!(
                    rows.iter()
                        .all(|r| r.completed_at.is_some_and(|at| at <= now))
                );
            }
            total += planned.len();
            lessons += planned.iter().map(|p| p.lessons_done).sum::<usize>();
        }
        assert_eq!(total, 35);
        assert_eq!(lessons, 70);
    }
}
