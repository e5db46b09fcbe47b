//! Public reads: the catalog page (summary, filters, pagination), courses, categories.
use std::collections::HashSet;

use learnhub_db::Backend;
use serde_json::Value;

use crate::{
    helpers::{all_pages, error_of, spawn_platform},
    on_both_backends,
};

on_both_backends!(
    catalog_page_summary_and_pagination,
    catalog_filters,
    courses_by_id_and_slug,
    categories_match_the_summary
);

fn ids(courses: &[Value]) -> Vec<i64> {
    courses.iter().map(|c| c["id"].as_i64().unwrap()).collect()
}

async fn catalog_page_summary_and_pagination(backend: Backend) {
    let platform = spawn_platform(backend).await;
    let first = platform.get_json("/v1/catalog").await;
    let summary = &first["summary"];
    let python = summary["course_counts"]["python"].as_i64().unwrap();
    let sql = summary["course_counts"]["sql"].as_i64().unwrap();
    assert!(python > 0 && sql > 0, "{summary}");
    assert!(summary["categories"].as_array().unwrap().len() >= 6);
    for (kind, featured) in summary["featured"].as_object().unwrap() {
        let featured = featured.as_array().unwrap();
        assert!(!featured.is_empty(), "featured {kind}");
        for course in featured {
            assert_eq!(course["course_type"], kind.as_str());
            assert_eq!(course["is_featured"], true);
            assert_eq!(course["status"], "published");
        }
    }
    // The default page is 20 courses and the demo catalog has more published courses than that.
    assert_eq!(first["courses"].as_array().unwrap().len(), 20);
    assert!(first["next_page_token"].is_string());

    // Small pages to the end: every published course exactly once, nothing else.
    let (courses, pages) = all_pages(&platform, "page_size=7").await;
    let ids = ids(&courses);
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "a course repeated across pages");
    assert_eq!(ids.len() as i64, python + sql);
    assert_eq!(pages, ids.len().div_ceil(7).max(1));
    for course in &courses {
        assert_eq!(course["status"], "published");
        assert!(course["published_at"].is_string());
        for field in [
            "id",
            "slug",
            "title",
            "summary",
            "course_type",
            "level",
            "is_featured",
            "created_at",
            "updated_at",
        ] {
            assert!(!course[field].is_null(), "{field} in {course}");
        }
        assert!(course["category"]["slug"].is_string() && course["category"]["name"].is_string());
    }
}

async fn catalog_filters(backend: Backend) {
    let platform = spawn_platform(backend).await;
    let first = platform.get_json("/v1/catalog").await;
    let summary = &first["summary"];
    for kind in ["python", "sql"] {
        let (courses, _) = all_pages(&platform, &format!("type={kind}&page_size=100")).await;
        assert_eq!(
            courses.len() as i64,
            summary["course_counts"][kind].as_i64().unwrap(),
            "{kind}"
        );
        assert!(courses.iter().all(|c| c["course_type"] == kind), "{kind}");
    }
    let category = summary["categories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["course_count"].as_i64().unwrap() > 0)
        .unwrap();
    let slug = category["slug"].as_str().unwrap();
    let (courses, _) = all_pages(&platform, &format!("category={slug}&page_size=3")).await;
    assert_eq!(
        courses.len() as i64,
        category["course_count"].as_i64().unwrap()
    );
    assert!(courses.iter().all(|c| c["category"]["slug"] == slug));
    // Both filters at once: a python category holds no sql course.
    let kind = courses[0]["course_type"].as_str().unwrap();
    let other = if kind == "python" { "sql" } else { "python" };
    let page = platform
        .get_json(&format!("/v1/catalog?category={slug}&type={other}"))
        .await;
    assert_eq!(page["courses"], serde_json::json!([]));
    assert!(page["next_page_token"].is_null());
    // An unknown category is an empty page, not an error.
    let page = platform
        .get_json("/v1/catalog?category=no-such-category")
        .await;
    assert_eq!(page["courses"], serde_json::json!([]));
}

async fn courses_by_id_and_slug(backend: Backend) {
    let platform = spawn_platform(backend).await;
    let page = platform.get_json("/v1/catalog?page_size=1").await;
    let listed = &page["courses"][0];
    let id = listed["id"].as_i64().unwrap();
    let slug = listed["slug"].as_str().unwrap();
    let by_id = platform.get_json(&format!("/v1/courses/{id}")).await;
    let by_slug = platform.get_json(&format!("/v1/courses/{slug}")).await;
    assert_eq!(by_id, by_slug);
    assert_eq!(&by_id["course"], listed);
    let lessons = by_id["lessons"].as_array().unwrap();
    assert!(lessons.len() >= 3);
    let positions: Vec<i64> = lessons
        .iter()
        .map(|l| l["position"].as_i64().unwrap())
        .collect();
    assert_eq!(positions, (1..=lessons.len() as i64).collect::<Vec<_>>());
    assert!(lessons.iter().all(|l| l["course_id"] == id));

    for path in ["/v1/courses/99999999", "/v1/courses/no-such-course"] {
        let (status, code, _) = error_of(platform.get(path).send().await.unwrap()).await;
        assert_eq!(
            (status.as_u16(), code.as_str()),
            (404, "not_found"),
            "{path}"
        );
    }
}

async fn categories_match_the_summary(backend: Backend) {
    let platform = spawn_platform(backend).await;
    let categories = platform.get_json("/v1/categories").await;
    let categories = categories["categories"].as_array().unwrap();
    assert!(categories.len() >= 6);
    for category in categories {
        assert_eq!(category.as_object().unwrap().len(), 3, "{category}");
    }
    let summary = platform.get_json("/v1/catalog?page_size=1").await;
    assert_eq!(
        categories,
        summary["summary"]["categories"].as_array().unwrap()
    );
    let published: i64 = categories
        .iter()
        .map(|c| c["course_count"].as_i64().unwrap())
        .sum();
    let counts = &summary["summary"]["course_counts"];
    assert_eq!(
        published,
        counts["python"].as_i64().unwrap() + counts["sql"].as_i64().unwrap()
    );
}
