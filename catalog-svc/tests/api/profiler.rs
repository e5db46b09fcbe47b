//! The always-on query profiler: per-RPC statement counts, and the N+1 detector firing on a
//! deliberate loop while staying silent on the real RPCs.
use catalog_svc::models::course::CourseRow;
use learnhub_db::{Backend, profiler::profile_rpc};
use learnhub_proto::catalog::v1 as pb;

use crate::{helpers::spawn_app, on_both_backends};

on_both_backends!(
    per_rpc_counts_and_no_n_plus_one_on_real_rpcs,
    detector_fires_on_a_loop
);

async fn per_rpc_counts_and_no_n_plus_one_on_real_rpcs(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed(60).await;
    let mut client = app.client.clone();
    for id in 1..=5 {
        client
            .get_course(pb::GetCourseRequest {
                key: Some(pb::get_course_request::Key::Id(id)),
            })
            .await
            .unwrap();
    }
    client
        .get_catalog_summary(pb::GetCatalogSummaryRequest::default())
        .await
        .unwrap();
    client
        .list_courses(pb::ListCoursesRequest {
            page_size: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    client
        .batch_get_courses(pb::BatchGetCoursesRequest {
            ids: (1..=60).collect(),
        })
        .await
        .unwrap();

    let rpcs = app.db.profiler().rpcs();
    let get = &rpcs["/learnhub.catalog.v1.CatalogService/GetCourse"];
    assert_eq!((get.calls, get.statements, get.max_statements), (5, 10, 2));
    assert_eq!(
        rpcs["/learnhub.catalog.v1.CatalogService/GetCatalogSummary"].max_statements,
        3
    );
    assert_eq!(
        rpcs["/learnhub.catalog.v1.CatalogService/ListCourses"].max_statements,
        1
    );
    assert_eq!(
        rpcs["/learnhub.catalog.v1.CatalogService/BatchGetCourses"].max_statements,
        1
    );
    assert_eq!(
        app.db.profiler().n_plus_one_count(),
        0,
        "real RPCs have no N+1 pattern"
    );
}

async fn detector_fires_on_a_loop(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed(10).await;
    let db = app.db.clone();
    // What GetCourse would be if it fetched courses one by one: the same statement 6 times.
    profile_rpc("/test/CoursesOneByOne", async move {
        let mut conn = db.conn().await.unwrap();
        for id in 1..=6 {
            CourseRow::find(&mut conn, id).await.unwrap().unwrap();
        }
    })
    .await;
    let profiler = app.db.profiler();
    assert_eq!(profiler.n_plus_one_count(), 1);
    let rpc = &profiler.rpcs()["/test/CoursesOneByOne"];
    assert_eq!((rpc.statements, rpc.n_plus_one), (6, 1));
}
