//! REST/JSON routes: the public catalog, admin course writes, cache administration and database
//! statistics, liveness and readiness, Prometheus metrics.
pub mod extract;
pub mod headers;
pub mod json;
pub mod learner;
mod observe;

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, Request, State},
    middleware,
    response::{IntoResponse, Response},
    routing::{get, patch, post},
};
use http::{HeaderMap, StatusCode};
use learnhub_proto::{
    catalog::v1::{CourseStatus, CourseType},
    gateway::v1::GetCatalogPageRequest,
};

use self::{
    extract::{AdminCaller, JsonBody, MaybeCaller, PathSegment, QueryParams},
    json::{
        CacheStatsJson, CatalogPageJson, CatalogQuery, CategoriesJson, CourseDetailJson,
        CourseJson, CreateCourseJson, InvalidateCacheJson, InvalidatedJson, UpdateCourseJson,
    },
};
use crate::{
    admin::DbStatsPairJson,
    catalog::course_key,
    error::{Error, ErrorBody},
    state::Gateway,
};

/// Largest JSON request body read; a larger one is a 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Every REST route, with JSON answers for unknown paths and methods. Each request is observed
/// ([`observe::observe`]): its span is named after its route and its duration recorded; each
/// answer carries the [`headers::SecurityHeaders`].
pub fn router(gateway: Arc<Gateway>, security: headers::SecurityHeaders) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        // The whole process's metrics (in the monolith, every service's); no token needed.
        .route("/metrics", get(learnhub_kit::metrics::scrape))
        .route("/v1/catalog", get(catalog_page))
        .route("/v1/courses/{key}", get(course))
        .route("/v1/categories", get(categories))
        .route("/admin", get(crate::console::index))
        .route("/admin/", get(crate::console::index))
        .route("/admin/assets/{*file}", get(crate::console::asset))
        .route("/v1/admin/courses", post(create_course).get(admin_courses))
        .route("/v1/admin/courses/{id}", patch(update_course))
        .route("/v1/admin/courses/{id}/publish", post(publish_course))
        .route("/v1/admin/courses/{id}/archive", post(archive_course))
        .route("/v1/me", get(learner::me))
        .route("/v1/me/enrollments", get(learner::my_enrollments))
        .route("/v1/enrollments", post(learner::enroll))
        .route(
            "/v1/enrollments/{id}/progress",
            get(learner::progress).post(learner::record_progress),
        )
        .route(
            "/v1/exercises/{id}/submissions",
            get(learner::submissions).post(learner::submit),
        )
        .route("/v1/admin/users/{key}", get(learner::user))
        .route(
            "/v1/admin/stats/enrollments",
            get(learner::enrollment_stats),
        )
        .route("/v1/admin/cache/stats", get(cache_stats))
        .route("/v1/admin/cache/invalidate", post(invalidate_cache))
        .route("/v1/admin/db/stats", get(db_stats))
        .route("/v1/admin/db/stats/reset", post(reset_db_stats))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(observe::observe))
        .layer(middleware::from_fn_with_state(security, headers::apply))
        .with_state(gateway)
}

/// `GET /v1/catalog?type=python|sql&category=<slug>&page_size=1..=100&page_token=...`
fn catalog_request(query: CatalogQuery) -> Result<GetCatalogPageRequest, Error> {
    let present = |value: Option<String>| value.filter(|value| !value.is_empty());
    let course_type = match present(query.course_type).as_deref() {
        None => CourseType::Unspecified,
        Some("python") => CourseType::Python,
        Some("sql") => CourseType::Sql,
        Some(other) => {
            return Err(Error::invalid(format!(
                "type: must be python or sql, got {other:?}"
            )));
        }
    };
    // Over REST an explicit page_size must be a real size; leaving it out means the default.
    let page_size = learner::page_size(query.page_size)?;
    Ok(GetCatalogPageRequest {
        course_type: course_type.into(),
        category: present(query.category).unwrap_or_default(),
        page_size,
        page_token: present(query.page_token).unwrap_or_default(),
    })
}

#[tracing::instrument(skip_all, fields(route = "GET /v1/catalog"))]
async fn catalog_page(
    State(gateway): State<Arc<Gateway>>,
    MaybeCaller(caller): MaybeCaller,
    QueryParams(query): QueryParams<CatalogQuery>,
) -> Result<Response, Error> {
    let request = catalog_request(query)?;
    let page = gateway.catalog_page(caller.as_ref(), request).await?;
    let stale = page.stale_seconds();
    Ok(marked_stale(CatalogPageJson::from(page.value), stale))
}

/// `json` as the answer, with `x-learnhub-stale-seconds` when it is a stale copy.
fn marked_stale<J: serde::Serialize>(json: J, stale: Option<String>) -> Response {
    let mut response = Json(json).into_response();
    if let Some(age) = stale.and_then(|age| http::HeaderValue::from_str(&age).ok()) {
        response
            .headers_mut()
            .insert(crate::stale::STALE_HEADER, age);
    }
    response
}

#[tracing::instrument(skip_all, fields(route = "GET /v1/courses/{key}", key = %key.0))]
async fn course(
    State(gateway): State<Arc<Gateway>>,
    MaybeCaller(caller): MaybeCaller,
    key: PathSegment,
) -> Result<Response, Error> {
    let key = course_key(&key.0)?;
    let course = gateway.course(caller.as_ref(), Some(key)).await?;
    let stale = course.stale_seconds();
    Ok(marked_stale(CourseDetailJson::from(course.value), stale))
}

#[tracing::instrument(skip_all, fields(route = "GET /v1/categories"))]
async fn categories(
    State(gateway): State<Arc<Gateway>>,
    // Authenticated like every route, so a bad token is a 401 everywhere, not only sometimes.
    MaybeCaller(_caller): MaybeCaller,
) -> Result<Response, Error> {
    let response = gateway.categories().await?;
    let stale = response.stale_seconds();
    let json = CategoriesJson {
        categories: response
            .value
            .categories
            .into_iter()
            .map(Into::into)
            .collect(),
    };
    Ok(marked_stale(json, stale))
}

#[tracing::instrument(skip_all, fields(route = "POST /v1/admin/courses", admin = %admin.subject))]
async fn create_course(
    State(gateway): State<Arc<Gateway>>,
    AdminCaller(admin): AdminCaller,
    JsonBody(body): JsonBody<CreateCourseJson>,
) -> Result<(StatusCode, Json<CourseJson>), Error> {
    let course = gateway.create_course(Some(&admin), body.into()).await?;
    Ok((StatusCode::CREATED, Json(course.into())))
}

#[tracing::instrument(skip_all, fields(route = "PATCH /v1/admin/courses/{id}", admin = %admin.subject, id = %id.0))]
async fn update_course(
    State(gateway): State<Arc<Gateway>>,
    AdminCaller(admin): AdminCaller,
    id: PathSegment,
    JsonBody(body): JsonBody<UpdateCourseJson>,
) -> Result<Json<CourseJson>, Error> {
    let id = id.id()?;
    let course = gateway
        .update_course(Some(&admin), body.into_request(id))
        .await?;
    Ok(Json(course.into()))
}

#[tracing::instrument(skip_all, fields(route = "POST /v1/admin/courses/{id}/publish", admin = %admin.subject, id = %id.0))]
async fn publish_course(
    State(gateway): State<Arc<Gateway>>,
    AdminCaller(admin): AdminCaller,
    id: PathSegment,
) -> Result<Json<CourseJson>, Error> {
    let course = gateway.publish_course(Some(&admin), id.id()?).await?;
    Ok(Json(course.into()))
}

#[tracing::instrument(skip_all, fields(route = "POST /v1/admin/courses/{id}/archive", admin = %admin.subject, id = %id.0))]
async fn archive_course(
    State(gateway): State<Arc<Gateway>>,
    AdminCaller(admin): AdminCaller,
    id: PathSegment,
) -> Result<Json<CourseJson>, Error> {
    let course = gateway.archive_course(Some(&admin), id.id()?).await?;
    Ok(Json(course.into()))
}

#[tracing::instrument(skip_all, fields(route = "GET /v1/admin/cache/stats", admin = %admin.subject))]
async fn cache_stats(
    State(gateway): State<Arc<Gateway>>,
    AdminCaller(admin): AdminCaller,
) -> Result<Json<CacheStatsJson>, Error> {
    let stats = gateway.cache_stats(Some(&admin)).await?;
    Ok(Json(stats.into()))
}

#[tracing::instrument(skip_all, fields(route = "POST /v1/admin/cache/invalidate", admin = %admin.subject))]
async fn invalidate_cache(
    State(gateway): State<Arc<Gateway>>,
    AdminCaller(admin): AdminCaller,
    JsonBody(body): JsonBody<InvalidateCacheJson>,
) -> Result<Json<InvalidatedJson>, Error> {
    let request = learnhub_proto::cache::v1::InvalidatePatternRequest {
        pattern: body.pattern.clone(),
        relay: None,
    };
    let removed = gateway
        .invalidate_cache(Some(&admin), request)
        .await?
        .removed;
    Ok(Json(InvalidatedJson {
        pattern: body.pattern,
        removed,
    }))
}

#[tracing::instrument(skip_all, fields(route = "GET /v1/admin/db/stats", admin = %admin.subject))]
async fn db_stats(
    State(gateway): State<Arc<Gateway>>,
    AdminCaller(admin): AdminCaller,
) -> Result<Json<DbStatsPairJson>, Error> {
    let stats = gateway.db_stats(Some(&admin)).await?;
    Ok(Json(stats.into()))
}

#[tracing::instrument(skip_all, fields(route = "POST /v1/admin/db/stats/reset", admin = %admin.subject))]
async fn reset_db_stats(
    State(gateway): State<Arc<Gateway>>,
    AdminCaller(admin): AdminCaller,
) -> Result<Json<serde_json::Value>, Error> {
    let reset = gateway.reset_db_stats(Some(&admin)).await?;
    Ok(Json(serde_json::json!({ "reset": reset })))
}

#[tracing::instrument(skip_all, fields(route = "GET /v1/admin/courses", admin = %admin.subject))]
async fn admin_courses(
    State(gateway): State<Arc<Gateway>>,
    AdminCaller(admin): AdminCaller,
    QueryParams(query): QueryParams<learner::PageQuery>,
) -> Result<Json<AdminCoursesJson>, Error> {
    let present = |value: Option<String>| value.filter(|value| !value.is_empty());
    let status = match present(query.status).as_deref() {
        None => CourseStatus::Unspecified,
        Some("draft") => CourseStatus::Draft,
        Some("published") => CourseStatus::Published,
        Some("archived") => CourseStatus::Archived,
        Some(other) => {
            return Err(Error::invalid(format!(
                "status: must be draft, published or archived, got {other:?}"
            )));
        }
    };
    let page_size = learner::page_size(query.page_size)?;
    let page = gateway
        .admin_courses(
            Some(&admin),
            status,
            page_size,
            present(query.page_token).unwrap_or_default(),
        )
        .await?;
    Ok(Json(AdminCoursesJson {
        courses: page.courses.into_iter().map(CourseJson::from).collect(),
        next_page_token: page.next_page_token,
    }))
}

#[derive(Debug, serde::Serialize)]
struct AdminCoursesJson {
    courses: Vec<CourseJson>,
    next_page_token: String,
}

/// Alive: answers without touching any upstream.
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Ready: the gateway itself takes requests (once it stops, on SIGTERM, the listener closes and
/// the probe fails). It does not depend on the upstreams: an upstream that is down is answered
/// per request (503 / UNAVAILABLE, or a marked stale copy), and taking every gateway pod out of
/// its Service for it would turn a partial outage into a total one. Their states are reported
/// for people.
#[tracing::instrument(skip_all, fields(route = "GET /readyz"))]
async fn readyz(State(gateway): State<Arc<Gateway>>) -> Json<serde_json::Value> {
    let dependencies = gateway.upstreams.readiness().await;
    Json(serde_json::json!({"status": "ready", "dependencies": dependencies}))
}

pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"))
}

/// A gRPC client asking for a method we do not serve gets UNIMPLEMENTED, as from any gRPC server.
fn grpc_unimplemented(request: &Request) -> Response {
    let status = tonic::Status::unimplemented(format!("unknown method {}", request.uri().path()));
    status.into_http::<axum::body::Body>().into_response()
}

async fn not_found(request: Request) -> Response {
    if is_grpc(request.headers()) {
        return grpc_unimplemented(&request);
    }
    let body = ErrorBody {
        code: "not_found",
        message: format!("no route for {} {}", request.method(), request.uri().path()),
    };
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

async fn method_not_allowed(request: Request) -> Response {
    if is_grpc(request.headers()) {
        return grpc_unimplemented(&request);
    }
    let body = ErrorBody {
        code: "method_not_allowed",
        message: format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    };
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> CatalogQuery {
        let mut q = CatalogQuery::default();
        for (key, value) in pairs {
            let value = Some((*value).to_owned());
            match *key {
                "type" => q.course_type = value,
                "category" => q.category = value,
                "page_size" => q.page_size = value,
                "page_token" => q.page_token = value,
                _ => unreachable!(),
            }
        }
        q
    }

    #[test]
    fn catalog_query_validation_names_the_field() {
        let ok = catalog_request(query(&[("type", "sql"), ("page_size", "10")])).unwrap();
        assert_eq!(ok.course_type, i32::from(CourseType::Sql));
        assert_eq!(ok.page_size, 10);
        assert_eq!(catalog_request(query(&[])).unwrap().page_size, 0);
        for (pairs, field) in [
            (vec![("page_size", "0")], "page_size"),
            (vec![("page_size", "101")], "page_size"),
            (vec![("page_size", "ten")], "page_size"),
            (vec![("page_size", "-1")], "page_size"),
            (vec![("type", "ruby")], "type"),
        ] {
            let err = catalog_request(query(&pairs)).unwrap_err();
            assert!(err.to_string().starts_with(field), "{err}");
        }
    }
}
