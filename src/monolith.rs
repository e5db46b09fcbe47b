//! Monolithic mode: the whole platform on SQLite files under `--data-dir`, with demo data, and
//! a banner saying where it listens and what to try.
use anyhow::Context;
use learnhub_kit::{shutdown, telemetry};

use crate::{CacheStore, DemoData, Platform, PlatformConfig, cli::ServeArgs};

/// Serves until SIGTERM/SIGINT; a service that fails stops the whole process with its error.
pub(crate) async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let _telemetry = telemetry::init("learnhub", &args.log_format);
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let sqlite = |name: &str| format!("sqlite://{}", args.data_dir.join(name).display());

    let mut config = PlatformConfig::new(
        sqlite("catalog.db"),
        sqlite("enrollment.db"),
        args.auth_jwt_secret.clone(),
    );
    config.listen = args.listen.clone();
    config.cache = match &args.redis_url {
        Some(url) => CacheStore::Redis {
            url: url.clone(),
            key_prefix: None,
        },
        None => CacheStore::InProcess,
    };
    config.demo_data = DemoData::CatalogAndLearners;
    let stop = shutdown::on_signal();
    let platform = Platform::start(&config).await?;
    print_banner(&platform, args);
    platform.run_until_stopped(stop).await?;
    Ok(())
}

fn print_banner(platform: &Platform, args: &ServeArgs) {
    let port = platform.gateway_addr().port();
    let store = match &args.redis_url {
        Some(_) => "Redis",
        None => "in-process store",
    };
    let cache = platform
        .cache_addr()
        .map(|addr| addr.to_string())
        .unwrap_or_default();
    println!(
        "\nlearnhub is running (monolithic mode: SQLite in {data}/, cache: {store})\n\
         \n  gateway         http://localhost:{port}   gRPC + gRPC-Web + REST\
         \n  catalog-svc     http://{catalog}\
         \n  enrollment-svc  http://{enrollment}\
         \n  cache-svc       http://{cache}\n\
         \nTry:\
         \n  curl -s 'http://localhost:{port}/v1/catalog?type=python&page_size=3'\
         \n  curl -s http://localhost:{port}/v1/courses/1\
         \n  curl -s http://localhost:{port}/v1/categories\
         \n  grpcurl -plaintext localhost:{port} list\
         \n  grpcurl -plaintext -d '{{\"page_size\": 3}}' localhost:{port} learnhub.gateway.v1.GatewayService/GetCatalogPage\
         \n  TOKEN=$(cargo run --release -q -- token --admin)\
         \n  curl -s -X POST -H \"Authorization: Bearer $TOKEN\" http://localhost:{port}/v1/admin/courses/3/archive\
         \n  curl -s -H \"Authorization: Bearer $TOKEN\" http://localhost:{port}/v1/admin/cache/stats\
         \n  LEARNER=$(cargo run --release -q -- token --user 1)     # demo learner1@example.com\
         \n  curl -s -H \"Authorization: Bearer $LEARNER\" http://localhost:{port}/v1/me/enrollments\
         \n  curl -s -H \"Authorization: Bearer $LEARNER\" 'http://localhost:{port}/v1/catalog?page_size=5'\
         \n\nCtrl-C stops it.\n",
        data = args.data_dir.display(),
        catalog = platform.catalog_addr(),
        enrollment = platform.enrollment_addr(),
    );
}
