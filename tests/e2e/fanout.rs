//! The catalog page fan-out bound: one `GET /v1/catalog` (or GetCatalogPage) with a learner
//! token is at most one GetCatalogSummary and one ListCourses call on catalog-svc (exactly one
//! each when the catalog cache was emptied first) and exactly one BatchGetEnrollmentState call on
//! enrollment-svc, whatever the page size. Calls are counted on the wire (counting proxies
//! between the gateway and each service) and in each service's query profiler.
use std::collections::HashMap;

use learnhub_db::{Backend, Db, profiler::RpcStats};
use learnhub_proto::{catalog::v1::CourseType, gateway::v1::GetCatalogPageRequest};
use serde_json::{Value, json};

use crate::{
    helpers::{Platform, admin, spawn_counting_platform, with_token},
    on_both_backends,
};

on_both_backends!(catalog_page_fan_out_is_bounded);

const SUMMARY: &str = "/learnhub.catalog.v1.CatalogService/GetCatalogSummary";
const LIST: &str = "/learnhub.catalog.v1.CatalogService/ListCourses";
const BATCH: &str = "/learnhub.enrollment.v1.EnrollmentService/BatchGetEnrollmentState";

/// Per-RPC (calls, statements) that reached `db` since `before`; RPCs without any are absent.
fn db_calls_since(db: &Db, before: &HashMap<String, RpcStats>) -> HashMap<String, (u64, u64)> {
    db.profiler()
        .rpcs()
        .into_iter()
        .map(|(rpc, now)| {
            let then = before.get(&rpc).cloned().unwrap_or_default();
            (
                rpc,
                (now.calls - then.calls, now.statements - then.statements),
            )
        })
        .filter(|(_, (calls, _))| *calls > 0)
        .collect()
}

fn counts(pairs: &[(&str, u64)]) -> HashMap<String, u64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

/// Empties the catalog part of the cache, so the next page is loaded from catalog-svc's database.
async fn invalidate_catalog(platform: &Platform) {
    let (status, body) = platform
        .post_json_as(
            &admin(),
            "/v1/admin/cache/invalidate",
            &json!({"pattern": "catalog:*"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// What one catalog page cost: calls on the wire to each service, and calls that reached each
/// database.
struct Cost {
    catalog_wire: HashMap<String, u64>,
    enrollment_wire: HashMap<String, u64>,
    catalog_db: HashMap<String, (u64, u64)>,
    enrollment_db: HashMap<String, (u64, u64)>,
}

async fn measure<F: Future<Output = T>, T>(platform: &Platform, page: F) -> (T, Cost) {
    let calls = platform.upstream_calls.as_ref().unwrap();
    let (catalog_wire, enrollment_wire) = (calls.catalog.snapshot(), calls.enrollment.snapshot());
    let catalog_db = platform.catalog_db.profiler().rpcs();
    let enrollment_db = platform.enrollment_db.profiler().rpcs();
    let result = page.await;
    let cost = Cost {
        catalog_wire: calls.catalog.since(&catalog_wire),
        enrollment_wire: calls.enrollment.since(&enrollment_wire),
        catalog_db: db_calls_since(&platform.catalog_db, &catalog_db),
        enrollment_db: db_calls_since(&platform.enrollment_db, &enrollment_db),
    };
    (result, cost)
}

impl Cost {
    /// On the wire: with the catalog cache emptied first (`cold`), exactly one call of each
    /// catalog RPC; warm, at most one of each (the page or its parts may come from the cache).
    /// `batch` BatchGetEnrollmentState calls and nothing else on enrollment-svc.
    fn assert_wire(&self, cold: bool, batch: u64, context: &str) {
        let once = counts(&[("GetCatalogSummary", 1), ("ListCourses", 1)]);
        if cold {
            assert_eq!(self.catalog_wire, once, "{context}: catalog-svc calls");
        } else {
            assert!(
                self.catalog_wire
                    .iter()
                    .all(|(rpc, calls)| once.contains_key(rpc) && *calls <= 1),
                "{context}: catalog-svc calls {:?}",
                self.catalog_wire
            );
        }
        let enrollment = if batch == 0 {
            HashMap::new()
        } else {
            counts(&[("BatchGetEnrollmentState", batch)])
        };
        assert_eq!(
            self.enrollment_wire, enrollment,
            "{context}: enrollment-svc calls"
        );
    }

    /// With the catalog cache emptied first, both catalog RPCs reached the database once; the
    /// batch call reached enrollment-svc's database once, with at most two statements.
    fn assert_cold_databases(&self, context: &str) {
        let calls: HashMap<&str, u64> = self
            .catalog_db
            .iter()
            .map(|(rpc, (calls, _))| (rpc.as_str(), *calls))
            .collect();
        assert_eq!(
            calls,
            HashMap::from([(SUMMARY, 1), (LIST, 1)]),
            "{context}: catalog-svc database"
        );
        self.assert_batch_database(context);
    }

    /// Warm: the catalog page or its parts may be served from a cache (at most one load each).
    fn assert_warm_databases(&self, context: &str) {
        for (rpc, (calls, _)) in &self.catalog_db {
            assert!(
                (rpc == SUMMARY || rpc == LIST) && *calls <= 1,
                "{context}: catalog-svc database: {:?}",
                self.catalog_db
            );
        }
        self.assert_batch_database(context);
    }

    fn assert_batch_database(&self, context: &str) {
        assert_eq!(
            self.enrollment_db.keys().collect::<Vec<_>>(),
            vec![BATCH],
            "{context}: enrollment-svc database"
        );
        let (calls, statements) = self.enrollment_db[BATCH];
        assert_eq!(calls, 1, "{context}");
        assert!(
            (1..=2).contains(&statements),
            "{context}: {statements} statements"
        );
    }
}

async fn catalog_page_fan_out_is_bounded(backend: Backend) {
    let platform = spawn_counting_platform(backend).await;
    let ada = platform.learner("fan.out@example.com").await;
    let first = platform.get_json("/v1/catalog?page_size=50").await;
    let published: i64 = first["summary"]["course_counts"]
        .as_object()
        .unwrap()
        .values()
        .map(|count| count.as_i64().unwrap())
        .sum();
    let ids: Vec<i64> = first["courses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|course| course["id"].as_i64().unwrap())
        .collect();
    assert!(
        ids.len() > 40,
        "the demo catalog is big enough: {published}"
    );

    // Enrolled in four courses of the first 50 (three of them among the first 5), one lesson
    // done in the first.
    let enrolled: Vec<i64> = [0, 3, 4, 40].iter().map(|i| ids[*i]).collect();
    let mut enrollment_of = HashMap::new();
    for course in &enrolled {
        let (status, enrollment) = platform
            .post_json_as(&ada.token, "/v1/enrollments", &json!({"course_id": course}))
            .await;
        assert_eq!(status, 200, "{enrollment}");
        enrollment_of.insert(*course, enrollment["id"].as_i64().unwrap());
    }
    let lessons = platform
        .get_json(&format!("/v1/courses/{}", enrolled[0]))
        .await;
    let lesson = lessons["lessons"][0]["id"].as_i64().unwrap();
    let (status, _) = platform
        .post_json_as(
            &ada.token,
            &format!("/v1/enrollments/{}/progress", enrollment_of[&enrolled[0]]),
            &json!({"lesson_id": lesson}),
        )
        .await;
    assert_eq!(status, 200);

    for page_size in [5, 50] {
        for cold in [true, false] {
            let context = format!("REST page_size={page_size} cold={cold}");
            if cold {
                invalidate_catalog(&platform).await;
            }
            let path = format!("/v1/catalog?page_size={page_size}");
            let (page, cost) = measure(&platform, platform.get_json_as(&ada.token, &path)).await;
            cost.assert_wire(cold, 1, &context);
            if cold {
                cost.assert_cold_databases(&context);
            } else {
                cost.assert_warm_databases(&context);
            }

            // And the one batch call did fill in every enrolled course on the page.
            let entries = page["courses"].as_array().unwrap();
            assert_eq!(entries.len() as i64, published.min(page_size), "{context}");
            for entry in entries {
                let id = entry["id"].as_i64().unwrap();
                match enrollment_of.get(&id) {
                    Some(enrollment) => {
                        assert_eq!(entry["enrollment"]["id"], *enrollment, "{context}");
                        let done = if id == enrolled[0] { 1 } else { 0 };
                        assert_eq!(entry["completed_lessons"], done, "{context}");
                    }
                    None => assert!(entry.get("enrollment").is_none(), "{context}: {entry}"),
                }
            }
            let shown = entries
                .iter()
                .filter(|e| e.get("enrollment").is_some())
                .count();
            assert_eq!(shown, if page_size == 5 { 3 } else { 4 }, "{context}");
        }
    }

    // The gRPC twin costs the same.
    let mut client = platform.grpc().await;
    for page_size in [5, 50] {
        let context = format!("gRPC page_size={page_size}");
        invalidate_catalog(&platform).await;
        let request = with_token(
            GetCatalogPageRequest {
                course_type: CourseType::Unspecified.into(),
                page_size,
                ..Default::default()
            },
            &ada.token,
        );
        let (page, cost) = measure(&platform, client.get_catalog_page(request)).await;
        let page = page.unwrap().into_inner();
        cost.assert_wire(true, 1, &context);
        cost.assert_cold_databases(&context);
        assert_eq!(page.courses.len() as i64, published.min(page_size.into()));
        assert_eq!(
            page.courses
                .iter()
                .filter(|e| e.enrollment.is_some())
                .count(),
            if page_size == 5 { 3 } else { 4 }
        );
    }

    // Without a token the page is the public one: enrollment-svc is not asked at all.
    invalidate_catalog(&platform).await;
    let (page, cost): (Value, _) =
        measure(&platform, platform.get_json("/v1/catalog?page_size=50")).await;
    cost.assert_wire(true, 0, "anonymous");
    assert!(cost.enrollment_db.is_empty(), "{:?}", cost.enrollment_db);
    assert!(
        page["courses"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e.get("enrollment").is_none())
    );
}
