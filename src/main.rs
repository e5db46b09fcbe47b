//! learnhub in one process: gateway + catalog-svc on embedded SQLite, seeded with demo data.
//! The same services run as separate binaries in Kubernetes (see deploy/).
use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use learnhub_db::DbArgs;
use learnhub_kit::{shutdown, telemetry};

/// The dev-only signing secret of monolithic mode; set AUTH_JWT_SECRET for anything shared.
const DEV_SECRET: &str = "learnhub-dev-secret-change-me";

#[derive(Parser)]
#[command(
    name = "learnhub",
    version,
    about = "learnhub in one process: gateway + services on embedded SQLite with demo data",
    long_about = "Runs the whole platform in one process (monolithic mode): the gateway on --listen \
                  and every service on loopback ports, storing data in SQLite files under --data-dir \
                  and seeding a demo catalog on first start. Run the services separately against \
                  Postgres and Redis for production (see README)."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Where the gateway listens (gRPC, gRPC-Web and REST on one port).
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    listen: String,
    /// Folder for the SQLite databases (created if missing).
    #[arg(long, env = "DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Use this Redis for the cache instead of the in-process store (e.g. redis://127.0.0.1:6379).
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
    /// HS256 secret for caller tokens (default: a dev-only secret).
    #[arg(long, env = "AUTH_JWT_SECRET", default_value = DEV_SECRET, hide_env_values = true, hide_default_value = true)]
    auth_jwt_secret: String,
    /// `text` or `json` logs; filter with RUST_LOG (default info).
    #[arg(long, env = "LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

#[derive(Subcommand)]
enum Command {
    /// Print a signed token for calling the gateway (dev secret unless AUTH_JWT_SECRET is set).
    Token {
        /// An admin token (subject 0).
        #[arg(long, conflicts_with = "user")]
        admin: bool,
        /// A learner token for this user id.
        #[arg(long, required_unless_present = "admin")]
        user: Option<i64>,
        /// Validity in hours.
        #[arg(long, default_value_t = 24)]
        hours: u64,
        #[arg(long, env = "AUTH_JWT_SECRET", default_value = DEV_SECRET, hide_env_values = true, hide_default_value = true)]
        auth_jwt_secret: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Token {
            admin,
            user,
            hours,
            auth_jwt_secret,
        }) => {
            let (subject, role) = match (admin, user) {
                (true, _) => ("0".to_owned(), gateway::auth::Role::Admin),
                (false, Some(id)) => (id.to_string(), gateway::auth::Role::Learner),
                (false, None) => anyhow::bail!("give --admin or --user ID"),
            };
            let ttl = Duration::from_secs(hours * 3600);
            println!(
                "{}",
                gateway::auth::issue_token(&auth_jwt_secret, &subject, role, ttl)?
            );
            Ok(())
        }
        None => serve(cli.serve).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let _telemetry = telemetry::init("learnhub", &args.log_format);
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let sqlite = |name: &str| format!("sqlite://{}", args.data_dir.join(name).display());

    let cache = cache_svc::Application::build(&cache_svc::Config {
        listen: "127.0.0.1:0".into(),
        redis_url: args.redis_url.clone(),
        ..cache_svc::Config::default()
    })
    .await
    .context("starting cache-svc")?;
    let cache_addr = cache.local_addr();

    let catalog = catalog_svc::Application::build(&catalog_svc::Config {
        listen: "127.0.0.1:0".into(),
        db: DbArgs {
            database_url: sqlite("catalog.db"),
            db_pool_size: 8,
            slow_query_ms: 100,
            n_plus_one_threshold: 5,
        },
        cache_addr: Some(format!("http://{cache_addr}")),
        no_migrate: false,
    })
    .await
    .context("starting catalog-svc")?;
    let catalog_addr = catalog.local_addr();

    let mut enrollment_config = enrollment_svc::Config::new(
        "127.0.0.1:0",
        DbArgs {
            database_url: sqlite("enrollment.db"),
            db_pool_size: 8,
            slow_query_ms: 100,
            n_plus_one_threshold: 5,
        },
        format!("http://{catalog_addr}"),
    );
    enrollment_config.cache_addr = Some(format!("http://{cache_addr}"));
    let enrollment = enrollment_svc::Application::build(&enrollment_config)
        .await
        .context("starting enrollment-svc")?;
    let enrollment_addr = enrollment.local_addr();

    let gateway = gateway::Application::build(&gateway::Config {
        listen: args.listen.clone(),
        catalog_addr: format!("http://{catalog_addr}"),
        enrollment_addr: Some(format!("http://{enrollment_addr}")),
        cache_addr: Some(format!("http://{cache_addr}")),
        auth_jwt_secret: args.auth_jwt_secret.clone(),
        upstream_timeout_ms: 2_000,
    })
    .await
    .context("starting the gateway")?;
    let port = gateway.local_addr().port();
    let services = Services {
        catalog: catalog_addr.to_string(),
        enrollment: enrollment_addr.to_string(),
        cache: cache_addr.to_string(),
    };

    let stop = shutdown::on_signal();
    let catalog_db = catalog.db().clone();
    let enrollment_db = enrollment.db().clone();
    let running = tokio::spawn({
        let stop = stop.clone();
        async move {
            tokio::join!(
                catalog.run_until_stopped(stop.clone()),
                enrollment.run_until_stopped(stop.clone()),
                cache.run_until_stopped(stop.clone()),
                gateway.run_until_stopped(stop),
            )
        }
    });
    // Demo learners need the catalog serving: enrollment-svc reads courses and lessons from it.
    if let Some(report) = catalog_svc::seed::demo(&catalog_db).await? {
        tracing::info!(?report, "seeded the demo catalog");
    }
    let catalog_client = enrollment_svc::catalog_client::CatalogClient::connect_lazy(
        &format!("http://{catalog_addr}"),
        Duration::from_secs(5),
    )?;
    if let Some(report) = enrollment_svc::seed::demo(&enrollment_db, &catalog_client).await? {
        tracing::info!(?report, "seeded demo learners");
    }
    print_banner(port, &services, &args);

    let (catalog_done, enrollment_done, cache_done, gateway_done) = running.await?;
    catalog_done?;
    enrollment_done?;
    cache_done?;
    gateway_done?;
    Ok(())
}

/// Loopback addresses of the services behind the gateway.
struct Services {
    catalog: String,
    enrollment: String,
    cache: String,
}

fn print_banner(port: u16, services: &Services, args: &ServeArgs) {
    let store = match &args.redis_url {
        Some(_) => "Redis",
        None => "in-process store",
    };
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
        catalog = services.catalog,
        enrollment = services.enrollment,
        cache = services.cache,
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn verify_cli() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
