//! Calls on the caller's own data (enrollment-svc) and admin calls on users, stats and the cache.
//!
//! Authorisation always comes first, so an unconfigured upstream never hides a 401/403. The
//! caller's user id comes from the token's `sub`, never from the request: a learner cannot name
//! somebody else.
use learnhub_proto::{
    cache::v1::{
        CacheStats, GetStatsRequest, InvalidatePatternRequest, InvalidatePatternResponse,
        NearCacheStats, NearNamespaceCounters,
    },
    enrollment::v1::{
        self as enrollment, EnrollmentStatsRequest, EnrollmentStatsResponse, EnrollmentStatus,
        GetEnrollmentRequest, GetProgressRequest, GetUserByEmailRequest, ListEnrollmentsResponse,
        ListSubmissionsResponse, Progress, RecordLessonProgressRequest, Submission, User,
    },
    gateway::v1::{
        EnrollRequest, GetUserRequest, ListMyEnrollmentsRequest, ListMySubmissionsRequest,
        SubmitExerciseRequest, get_user_request::Key as UserKey,
    },
};

use learnhub_cache_client::{CacheClient, NearStats};
use learnhub_kit::validate;

use crate::{
    audit,
    auth::{AuthError, Caller, Role, require},
    catalog::validate_page_size,
    error::Error,
    state::Gateway,
    upstream::{CACHE, ENROLLMENT},
};

fn positive(field: &str, id: i64) -> Result<(), Error> {
    if id > 0 {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{field}: must be a positive integer, got {id}"
        )))
    }
}

impl Gateway {
    pub async fn me(&self, caller: Option<&Caller>) -> Result<User, Error> {
        let user_id = require(caller, Role::Learner)?.require_user_id()?;
        let mut client = self.upstreams.enrollment()?;
        let request = self
            .upstreams
            .request(enrollment::GetUserRequest { id: user_id });
        self.upstreams
            .call(ENROLLMENT, client.get_user(request))
            .await
    }

    pub async fn my_enrollments(
        &self,
        caller: Option<&Caller>,
        request: ListMyEnrollmentsRequest,
    ) -> Result<ListEnrollmentsResponse, Error> {
        let user_id = require(caller, Role::Learner)?.require_user_id()?;
        if EnrollmentStatus::try_from(request.status).is_err() {
            return Err(Error::invalid(format!(
                "status: unknown value {}",
                request.status
            )));
        }
        validate_page_size(request.page_size)?;
        let mut client = self.upstreams.enrollment()?;
        let request = self.upstreams.request(enrollment::ListEnrollmentsRequest {
            user_id,
            status: request.status,
            page_size: request.page_size,
            page_token: request.page_token,
        });
        self.upstreams
            .call(ENROLLMENT, client.list_enrollments(request))
            .await
    }

    pub async fn enroll(
        &self,
        caller: Option<&Caller>,
        request: EnrollRequest,
    ) -> Result<enrollment::Enrollment, Error> {
        let user_id = require(caller, Role::Learner)?.require_user_id()?;
        positive("course_id", request.course_id)?;
        let mut client = self.upstreams.enrollment()?;
        let request = self.upstreams.request(enrollment::EnrollRequest {
            user_id,
            course_id: request.course_id,
        });
        self.upstreams
            .call(ENROLLMENT, client.enroll(request))
            .await
    }

    pub async fn record_progress(
        &self,
        caller: Option<&Caller>,
        request: RecordLessonProgressRequest,
    ) -> Result<Progress, Error> {
        let caller = require(caller, Role::Learner)?;
        positive("enrollment_id", request.enrollment_id)?;
        positive("lesson_id", request.lesson_id)?;
        self.check_enrollment_owner(caller, request.enrollment_id)
            .await?;
        let mut client = self.upstreams.enrollment()?;
        let request = self.upstreams.request(request);
        self.upstreams
            .call(ENROLLMENT, client.record_lesson_progress(request))
            .await
    }

    pub async fn progress(
        &self,
        caller: Option<&Caller>,
        request: GetProgressRequest,
    ) -> Result<Progress, Error> {
        let caller = require(caller, Role::Learner)?;
        positive("enrollment_id", request.enrollment_id)?;
        self.check_enrollment_owner(caller, request.enrollment_id)
            .await?;
        let mut client = self.upstreams.enrollment()?;
        let request = self.upstreams.request(request);
        self.upstreams
            .call(ENROLLMENT, client.get_progress(request))
            .await
    }

    /// A learner may only touch their own enrollments; an admin may touch any.
    async fn check_enrollment_owner(
        &self,
        caller: &Caller,
        enrollment_id: i64,
    ) -> Result<(), Error> {
        if caller.role == Role::Admin {
            return Ok(());
        }
        let user_id = caller.require_user_id()?;
        let mut client = self.upstreams.enrollment()?;
        let request = self
            .upstreams
            .request(GetEnrollmentRequest { id: enrollment_id });
        let enrollment = self
            .upstreams
            .call(ENROLLMENT, client.get_enrollment(request))
            .await?;
        if enrollment.user_id == user_id {
            Ok(())
        } else {
            Err(AuthError::NotYours.into())
        }
    }

    pub async fn submit_exercise(
        &self,
        caller: Option<&Caller>,
        request: SubmitExerciseRequest,
    ) -> Result<Submission, Error> {
        let user_id = require(caller, Role::Learner)?.require_user_id()?;
        positive("exercise_id", request.exercise_id)?;
        validate::multi_line("code", &request.code)
            .map_err(|invalid| Error::invalid(invalid.to_string()))?;
        if !(0..=100).contains(&request.score) {
            return Err(Error::invalid(format!(
                "score: must be between 0 and 100, got {}",
                request.score
            )));
        }
        let mut client = self.upstreams.enrollment()?;
        let request = self.upstreams.request(enrollment::SubmitExerciseRequest {
            user_id,
            exercise_id: request.exercise_id,
            code: request.code,
            passed: request.passed,
            score: request.score,
        });
        self.upstreams
            .call(ENROLLMENT, client.submit_exercise(request))
            .await
    }

    pub async fn my_submissions(
        &self,
        caller: Option<&Caller>,
        request: ListMySubmissionsRequest,
    ) -> Result<ListSubmissionsResponse, Error> {
        let user_id = require(caller, Role::Learner)?.require_user_id()?;
        if request.exercise_id < 0 {
            return Err(Error::invalid(format!(
                "exercise_id: must be 0 (every exercise) or positive, got {}",
                request.exercise_id
            )));
        }
        validate_page_size(request.page_size)?;
        let mut client = self.upstreams.enrollment()?;
        let request = self.upstreams.request(enrollment::ListSubmissionsRequest {
            user_id,
            exercise_id: request.exercise_id,
            page_size: request.page_size,
            page_token: request.page_token,
        });
        self.upstreams
            .call(ENROLLMENT, client.list_submissions(request))
            .await
    }

    pub async fn user(
        &self,
        caller: Option<&Caller>,
        request: GetUserRequest,
    ) -> Result<User, Error> {
        require(caller, Role::Admin)?;
        let key = request
            .key
            .ok_or_else(|| Error::invalid("key: set id or email"))?;
        if let UserKey::Id(id) = &key {
            positive("id", *id)?;
        }
        let mut client = self.upstreams.enrollment()?;
        match key {
            UserKey::Id(id) => {
                let request = self.upstreams.request(enrollment::GetUserRequest { id });
                self.upstreams
                    .call(ENROLLMENT, client.get_user(request))
                    .await
            }
            UserKey::Email(email) => {
                if email.trim().is_empty() {
                    return Err(Error::invalid("email: must not be empty"));
                }
                let request = self.upstreams.request(GetUserByEmailRequest { email });
                self.upstreams
                    .call(ENROLLMENT, client.get_user_by_email(request))
                    .await
            }
        }
    }

    pub async fn enrollment_stats(
        &self,
        caller: Option<&Caller>,
        request: EnrollmentStatsRequest,
    ) -> Result<EnrollmentStatsResponse, Error> {
        require(caller, Role::Admin)?;
        let mut client = self.upstreams.enrollment()?;
        let request = self.upstreams.request(request);
        self.upstreams
            .call(ENROLLMENT, client.enrollment_stats(request))
            .await
    }

    pub async fn cache_stats(&self, caller: Option<&Caller>) -> Result<CacheStats, Error> {
        require(caller, Role::Admin)?;
        let mut client = self.upstreams.cache()?;
        let request = self.upstreams.request(GetStatsRequest {});
        let mut stats = self
            .upstreams
            .call(CACHE, client.get_stats(request))
            .await?;
        if let Some(near) = self.upstreams.page_cache().and_then(CacheClient::near) {
            stats
                .near_caches
                .push(near_cache_stats("gateway", &near.stats()));
        }
        Ok(stats)
    }

    pub async fn invalidate_cache(
        &self,
        caller: Option<&Caller>,
        request: InvalidatePatternRequest,
    ) -> Result<InvalidatePatternResponse, Error> {
        let admin = require(caller, Role::Admin)?;
        let resource = format!("cache pattern {:?}", request.pattern);
        let outcome = self.invalidate(request).await;
        audit::record(admin, "cache.invalidate", &resource, outcome)
    }

    async fn invalidate(
        &self,
        request: InvalidatePatternRequest,
    ) -> Result<InvalidatePatternResponse, Error> {
        if request.pattern.trim().is_empty() {
            return Err(Error::invalid("pattern: must not be empty"));
        }
        let mut client = self.upstreams.cache()?;
        let pattern = request.pattern.clone();
        let request = self.upstreams.request(request);
        let removed = self
            .upstreams
            .call(CACHE, client.invalidate_pattern(request))
            .await?;
        // The push will tell every L1; this gateway's own is told now (read-your-writes).
        if let Some(cache) = self.upstreams.page_cache() {
            cache.forget(&pattern);
        }
        Ok(removed)
    }
}

/// The L1's counters as the admin route shows them.
fn near_cache_stats(service: &str, stats: &NearStats) -> NearCacheStats {
    NearCacheStats {
        service: service.to_owned(),
        live: stats.live,
        entries: stats.entries,
        drops: stats.drops,
        pushed: stats.pushed,
        namespaces: stats
            .namespaces
            .iter()
            .map(|ns| NearNamespaceCounters {
                namespace: ns.namespace.to_owned(),
                hits: ns.hits,
                misses: ns.misses,
                hit_rate: match ns.hits + ns.misses {
                    0 => 0.0,
                    reads => ns.hits as f64 / reads as f64,
                },
            })
            .collect(),
    }
}
