//! Learner operations on validated input: each is a few queries (and catalog-svc calls), with
//! the statement count the contract promises (GetUserByEmail 1, ListEnrollments 1 per page,
//! BatchGetEnrollmentState ≤ 2, GetProgress ≤ 2, ListSubmissions 1 per page).
use std::collections::HashMap;

use learnhub_db::{Db, DbConn};
use learnhub_kit::time;
use learnhub_proto::enrollment::v1 as pb;

use crate::{
    analytics::{self, EnrollmentStats},
    cache::{self, LearnerCache},
    catalog_client::{CatalogClient, CourseOutline},
    convert,
    domain::{
        Email, EnrollmentKey, EnrollmentQuery, EnrollmentStateQuery, EnrollmentStatus,
        ProgressUpdate, StatsRange, StatusChange, SubmissionDraft, SubmissionQuery, UserDraft,
    },
    error::{Error, Result, is_foreign_key_violation, is_unique_violation},
    models::{
        enrollment::{Enrollment, NewEnrollment},
        exercise_submission::{NewSubmission, Submission},
        lesson_progress::{LessonProgress, Recorded},
        user::{NewUser, User},
    },
};

/// Learners and what they do, over one database, catalog-svc and the cache.
#[derive(Clone)]
pub struct Learners {
    db: Db,
    catalog: CatalogClient,
    cache: LearnerCache,
}

/// A page of rows and the id to continue before, if there is more (newest-first listings).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub rows: Vec<T>,
    pub next_before: Option<i64>,
}

impl Learners {
    pub fn new(db: Db, catalog: CatalogClient, cache: LearnerCache) -> Self {
        Self { db, catalog, cache }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    async fn conn(&self) -> Result<DbConn> {
        Ok(self.db.conn().await?)
    }

    pub async fn create_user(&self, draft: UserDraft) -> Result<User> {
        let UserDraft {
            email,
            display_name,
            role,
        } = draft;
        let mut conn = self.conn().await?;
        let new = NewUser {
            email: email.display().to_owned(),
            email_normalized: email.normalized().to_owned(),
            display_name,
            role,
            created_at: time::now(),
        };
        User::insert(&mut conn, &new).await.map_err(|err| {
            if is_unique_violation(&err) {
                Error::AlreadyExists(format!(
                    "a user with email {:?} already exists",
                    email.display()
                ))
            } else {
                err.into()
            }
        })
    }

    pub async fn user(&self, id: i64) -> Result<User> {
        let mut conn = self.conn().await?;
        User::find(&mut conn, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("user {id}")))
    }

    /// One statement, case-insensitive through the normalised column.
    pub async fn user_by_email(&self, email: &Email) -> Result<User> {
        let mut conn = self.conn().await?;
        User::find_by_email(&mut conn, email.normalized())
            .await?
            .ok_or_else(|| Error::NotFound(format!("user with email {:?}", email.display())))
    }

    /// Idempotent: an existing enrollment is returned as it is (whatever its status and whatever
    /// the course's status now). Otherwise the course must be published; the insert is
    /// `ON CONFLICT DO NOTHING` followed by a read, so concurrent calls all return the one row.
    pub async fn enroll(&self, key: EnrollmentKey) -> Result<Enrollment> {
        let EnrollmentKey { user_id, course_id } = key;
        {
            let mut conn = self.conn().await?;
            if let Some(existing) =
                Enrollment::find_for_course(&mut conn, user_id, course_id).await?
            {
                return Ok(existing);
            }
        }
        // No connection is held across the catalog call.
        match self.catalog.course_published(course_id).await? {
            None => return Err(Error::NotFound(format!("course {course_id}"))),
            Some(false) => {
                return Err(Error::FailedPrecondition(format!(
                    "course_id: course {course_id} is not published"
                )));
            }
            Some(true) => {}
        }
        let now = time::now();
        let new = NewEnrollment {
            user_id,
            course_id,
            status: EnrollmentStatus::Active,
            enrolled_at: now,
            completed_at: None,
            updated_at: now,
        };
        let insert = async |conn: &mut DbConn| {
            let inserted = Enrollment::insert_if_absent(conn, &new)
                .await
                .map_err(|err| {
                    if is_foreign_key_violation(&err) {
                        Error::NotFound(format!("user {user_id}"))
                    } else {
                        err.into()
                    }
                })?;
            let enrollment = Enrollment::find_for_course(conn, user_id, course_id)
                .await?
                .ok_or_else(|| {
                    Error::Internal(format!(
                        "enrollment of user {user_id} in course {course_id} vanished after its insert"
                    ))
                })?;
            Ok((inserted > 0, enrollment))
        };
        let (_, enrollment) = self
            .cache
            .write(
                &self.db,
                insert,
                async |_, (inserted, _): &(bool, Enrollment)| {
                    Ok(inserted.then(|| cache::user_changed(user_id)))
                },
            )
            .await?;
        Ok(enrollment)
    }

    pub async fn enrollment(&self, id: i64) -> Result<Enrollment> {
        let mut conn = self.conn().await?;
        Enrollment::find(&mut conn, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("enrollment {id}")))
    }

    /// One statement per page; the first page of each (user, status, size) is cached. An
    /// unknown user has no enrollments (an empty page, not NOT_FOUND: that would cost a query).
    pub async fn list_enrollments(
        &self,
        query: EnrollmentQuery,
    ) -> Result<pb::ListEnrollmentsResponse> {
        let EnrollmentQuery {
            user_id,
            status,
            page,
        } = query;
        let load = async {
            let mut conn = self.conn().await?;
            let rows =
                Enrollment::list(&mut conn, user_id, status, page.before, page.size + 1).await?;
            let rows = into_page(rows, page.size, |e| e.id);
            Ok(convert::enrollment_page(&rows))
        };
        if page.before.is_some() {
            return load.await;
        }
        self.cache
            .get_or_load(&cache::enrollments_key(user_id, status, page.size), load)
            .await
    }

    /// The user's enrollments among `course_ids` with their completed-lesson counts: two
    /// statements (one when the user has none of them). Not cached: the set of ids varies.
    pub async fn enrollment_states(
        &self,
        query: &EnrollmentStateQuery,
    ) -> Result<Vec<(Enrollment, i64)>> {
        let mut conn = self.conn().await?;
        let enrollments =
            Enrollment::for_courses(&mut conn, query.user_id, &query.course_ids).await?;
        let ids: Vec<i64> = enrollments.iter().map(|e| e.id).collect();
        let counts: HashMap<i64, i64> = LessonProgress::completed_counts(&mut conn, &ids)
            .await?
            .into_iter()
            .collect();
        let by_course: HashMap<i64, Enrollment> =
            enrollments.into_iter().map(|e| (e.course_id, e)).collect();
        // In the order of the request, each course once.
        let mut seen = std::collections::HashSet::new();
        Ok(query
            .course_ids
            .iter()
            .filter(|id| seen.insert(**id))
            .filter_map(|id| by_course.get(id))
            .map(|e| (e.clone(), counts.get(&e.id).copied().unwrap_or(0)))
            .collect())
    }

    /// A legal transition in one conditional UPDATE; otherwise FAILED_PRECONDITION naming both
    /// statuses (or NOT_FOUND).
    pub async fn update_status(&self, change: StatusChange) -> Result<Enrollment> {
        let StatusChange { id, to } = change;
        let transition =
            async |conn: &mut DbConn| match Enrollment::transition(conn, id, to, time::now())
                .await?
            {
                Some(moved) => Ok(moved),
                None => {
                    let current = Enrollment::find(conn, id)
                        .await?
                        .ok_or_else(|| Error::NotFound(format!("enrollment {id}")))?;
                    Err(Error::FailedPrecondition(format!(
                        "status: enrollment {id} is {}; it cannot become {}",
                        current.status.as_str(),
                        to.as_str()
                    )))
                }
            };
        self.cache
            .write(&self.db, transition, async |_, moved: &Enrollment| {
                Ok(Some(cache::user_changed(moved.user_id)))
            })
            .await
    }

    /// The course as the catalog has it now; NOT_FOUND only if it was removed from the catalog.
    async fn enrolled_course(&self, enrollment: &Enrollment) -> Result<CourseOutline> {
        self.catalog
            .course(enrollment.course_id)
            .await?
            .ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "course {} of enrollment {} is no longer in the catalog",
                    enrollment.course_id, enrollment.id
                ))
            })
    }

    /// Records one lesson as completed (or not), idempotently; completing the last lesson
    /// completes the enrollment in the same transaction. The lesson must be one of the
    /// enrollment's course (asked of catalog-svc before the transaction opens).
    /// `allowed` sees the enrollment first (an ownership check, with no statement of its own).
    pub async fn record_progress(
        &self,
        update: ProgressUpdate,
        allowed: impl FnOnce(&Enrollment) -> Result<()>,
    ) -> Result<pb::Progress> {
        let ProgressUpdate {
            enrollment_id,
            lesson_id,
            completed,
        } = update;
        let enrollment = self.enrollment(enrollment_id).await?;
        allowed(&enrollment)?;
        refuse_dropped(&enrollment)?;
        let course = self.enrolled_course(&enrollment).await?;
        if !course.lesson_ids.contains(&lesson_id) {
            return Err(self.foreign_lesson(lesson_id, &enrollment).await);
        }
        let record = async |conn: &mut DbConn| {
            let now = time::now();
            Ok(LessonProgress::record(
                conn,
                enrollment_id,
                lesson_id,
                completed,
                &course.lesson_ids,
                now,
            )
            .await?)
        };
        let recorded = self
            .cache
            .write(&self.db, record, async |_, recorded: &Recorded| {
                Ok(match recorded {
                    Recorded::Done { enrollment, .. } => {
                        Some(cache::user_changed(enrollment.user_id))
                    }
                    // Refused: nothing was written.
                    Recorded::Dropped(_) | Recorded::NoEnrollment => None,
                })
            })
            .await?;
        match recorded {
            Recorded::Done { enrollment, rows } => {
                Ok(convert::progress(&enrollment, &course.lesson_ids, &rows))
            }
            Recorded::Dropped(enrollment) => Err(dropped(&enrollment)),
            Recorded::NoEnrollment => Err(Error::NotFound(format!("enrollment {enrollment_id}"))),
        }
    }

    /// Why a lesson that is not among the course's lessons was refused.
    async fn foreign_lesson(&self, lesson_id: i64, enrollment: &Enrollment) -> Error {
        match self.catalog.lessons(&[lesson_id]).await {
            Ok(found) => match found.iter().find(|l| l.id == lesson_id) {
                Some(lesson) => Error::FailedPrecondition(format!(
                    "lesson_id: lesson {lesson_id} belongs to course {}, not to course {} of enrollment {}",
                    lesson.course_id, enrollment.course_id, enrollment.id
                )),
                None => Error::NotFound(format!("lesson {lesson_id}")),
            },
            Err(err) => err,
        }
    }

    /// Two statements (the enrollment, its progress rows) and one catalog call for the course's
    /// lessons; the enrollment read gives the owner, which keys the cache.
    /// `allowed` sees the enrollment first (an ownership check, with no statement of its own).
    pub async fn progress(
        &self,
        enrollment_id: i64,
        allowed: impl FnOnce(&Enrollment) -> Result<()>,
    ) -> Result<pb::Progress> {
        let enrollment = self.enrollment(enrollment_id).await?;
        allowed(&enrollment)?;
        let key = cache::progress_key(enrollment.user_id, enrollment.id);
        self.cache
            .get_or_load(&key, async {
                let course = self.enrolled_course(&enrollment).await?;
                let mut conn = self.conn().await?;
                let rows = LessonProgress::for_enrollment(&mut conn, enrollment.id).await?;
                Ok(convert::progress(&enrollment, &course.lesson_ids, &rows))
            })
            .await
    }

    /// The exercise must exist in the catalog; the user must exist (the foreign key says so
    /// without a read).
    pub async fn submit(&self, draft: SubmissionDraft) -> Result<Submission> {
        if !self.catalog.exercise_exists(draft.exercise_id).await? {
            return Err(Error::NotFound(format!("exercise {}", draft.exercise_id)));
        }
        let user_id = draft.user_id;
        let new = NewSubmission {
            user_id,
            exercise_id: draft.exercise_id,
            code: draft.code,
            passed: draft.passed,
            score: draft.score,
            submitted_at: time::now(),
        };
        let insert = async |conn: &mut DbConn| {
            Submission::insert(conn, &new).await.map_err(|err| {
                if is_foreign_key_violation(&err) {
                    Error::NotFound(format!("user {user_id}"))
                } else {
                    err.into()
                }
            })
        };
        self.cache
            .write(&self.db, insert, async |_, _| {
                Ok(Some(cache::user_changed(user_id)))
            })
            .await
    }

    /// Three statements over the date indexes (see `analytics`).
    pub async fn stats(&self, range: StatsRange) -> Result<EnrollmentStats> {
        let mut conn = self.conn().await?;
        Ok(analytics::enrollment_stats(&mut conn, range).await?)
    }

    /// Newest first by id, one statement per page.
    pub async fn submissions(&self, query: SubmissionQuery) -> Result<Page<Submission>> {
        let SubmissionQuery {
            user_id,
            exercise_id,
            page,
        } = query;
        let mut conn = self.conn().await?;
        let rows =
            Submission::list(&mut conn, user_id, exercise_id, page.before, page.size + 1).await?;
        Ok(into_page(rows, page.size, |s| s.id))
    }
}

fn refuse_dropped(enrollment: &Enrollment) -> Result<()> {
    if enrollment.status == EnrollmentStatus::Dropped {
        return Err(dropped(enrollment));
    }
    Ok(())
}

fn dropped(enrollment: &Enrollment) -> Error {
    Error::FailedPrecondition(format!(
        "enrollment_id: enrollment {} is dropped; make it active again before recording progress",
        enrollment.id
    ))
}

/// Rows fetched with a limit of `page_size + 1`: the extra row only says another page follows.
fn into_page<T>(mut rows: Vec<T>, page_size: i64, id_of: impl Fn(&T) -> i64) -> Page<T> {
    let next_before = if rows.len() as i64 > page_size {
        rows.truncate(page_size as usize);
        rows.last().map(id_of)
    } else {
        None
    };
    Page { rows, next_before }
}
