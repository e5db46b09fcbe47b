//! Test harness: cache-svc on a free port with a fresh Redis key prefix, and a private redis-server.
use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use cache_svc::{Application, Config, key::escape_glob};
use learnhub_cache_client::{CacheClient, CacheClientOptions};
use learnhub_kit::{server::ServeError, shutdown::CancellationToken};
use learnhub_proto::cache::v1::{
    CacheStats, GetRequest, GetStatsRequest, SetRequest, cache_service_client::CacheServiceClient,
};
use redis::AsyncCommands;
use tonic::transport::Channel;

pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

pub struct TestApp {
    pub addr: SocketAddr,
    pub grpc: CacheServiceClient<Channel>,
    pub config: Config,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
}

/// A fresh key prefix, so tests share the Redis at 127.0.0.1:6379 without seeing each other.
pub fn fresh_prefix() -> String {
    format!("test-{}-{:016x}:", std::process::id(), fastrand::u64(..))
}

/// cache-svc on the shared Redis under a fresh prefix.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(Config {
        redis_url: Some(REDIS_URL.into()),
        ..test_config()
    })
    .await
}

/// cache-svc on the in-process store only (the monolith's mode).
pub async fn spawn_memory_app() -> TestApp {
    spawn_app_with(test_config()).await
}

pub fn test_config() -> Config {
    Config {
        listen: "127.0.0.1:0".into(),
        key_prefix: fresh_prefix(),
        ..Config::default()
    }
}

pub async fn spawn_app_with(config: Config) -> TestApp {
    let app = Application::build(&config).await.expect("cache-svc builds");
    let addr = app.local_addr();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let grpc = CacheServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connects")
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    TestApp {
        addr,
        grpc,
        config,
        shutdown,
        task,
    }
}

impl TestApp {
    /// Stops the server and deletes every Redis key under its prefix.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("joins").expect("serves cleanly");
        if let Some(url) = &self.config.redis_url {
            delete_prefix(url, &self.config.key_prefix).await;
        }
    }

    /// Stops the server but leaves Redis as it is (for restarts on the same prefix).
    pub async fn stop_keep_data(self) -> Config {
        self.shutdown.cancel();
        self.task.await.expect("joins").expect("serves cleanly");
        self.config
    }

    pub fn cache_client(&self) -> CacheClient {
        CacheClient::connect_lazy(
            &self.addr.to_string(),
            CacheClientOptions {
                // Debug builds on a busy 2-core box: generous, the tests assert counts, not time.
                call_timeout: Duration::from_secs(5),
                ..CacheClientOptions::default()
            },
        )
        .expect("valid address")
    }

    pub async fn stats(&self) -> CacheStats {
        self.grpc
            .clone()
            .get_stats(GetStatsRequest {})
            .await
            .expect("stats")
            .into_inner()
    }

    pub async fn set(&self, key: &str, value: &[u8], ttl_seconds: u32) -> bool {
        self.grpc
            .clone()
            .set(SetRequest {
                key: key.into(),
                value: value.to_vec(),
                ttl_seconds,
                lease: 0,
            })
            .await
            .expect("set")
            .into_inner()
            .stored
    }

    /// The value, or None on a miss.
    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let found = self
            .grpc
            .clone()
            .get(GetRequest { key: key.into() })
            .await
            .expect("get")
            .into_inner();
        found.found.then_some(found.value)
    }

    /// Polls (bounded) until the service reports `store`.
    pub async fn wait_for_store(&self, store: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.stats().await.store != store {
            assert!(Instant::now() < deadline, "store never became {store}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis reachable")
}

/// Keys under `prefix` whose names contain `part`.
pub async fn count_keys(url: &str, prefix: &str, part: &str) -> usize {
    let mut conn = redis_conn(url).await;
    let matcher = format!("{}*{}*", escape_glob(prefix), escape_glob(part));
    let mut cursor: u64 = 0;
    let mut count = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&matcher)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .expect("scan");
        count += keys.len();
        cursor = next;
        if cursor == 0 {
            return count;
        }
    }
}

pub async fn delete_prefix(url: &str, prefix: &str) {
    let mut conn = redis_conn(url).await;
    let matcher = format!("{}*", escape_glob(prefix));
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&matcher)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .expect("scan");
        if !keys.is_empty() {
            let _: () = conn.unlink(keys).await.expect("unlink");
        }
        cursor = next;
        if cursor == 0 {
            return;
        }
    }
}

/// A redis-server of the test's own on a free port, killed on drop. Persistence is off except for
/// an explicit SAVE, so a restart can bring back exactly the data saved before a kill.
pub struct RedisProcess {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
}

impl RedisProcess {
    /// redis-server on a free port. Port 0 would turn its TCP listener off, so a port is picked
    /// here; when a parallel test takes it first, redis-server exits and another one is tried.
    pub fn start() -> Self {
        let mut redis = Self::stopped();
        for _ in 0..20 {
            if redis.spawn().is_ok() {
                return redis;
            }
            redis.port = free_port();
        }
        panic!("redis-server did not start on any of 20 free ports");
    }

    /// Reserves a port and a directory without starting the server (see [`RedisProcess::restart`]).
    pub fn stopped() -> Self {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("cache-svc-test-redis-{port}-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self {
            child: None,
            port,
            dir,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts redis-server and returns once it logs that it accepts connections; an error when it
    /// exits first (its port was taken).
    fn spawn(&mut self) -> Result<(), String> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        self.child = Some(wait_until_ready(child).map_err(|said| said.join("\n"))?);
        Ok(())
    }

    /// SAVE: the next restart loads what is there now. It writes and syncs the file before it
    /// answers, which on a loaded machine took longer than the client's default 500 ms
    /// response timeout: this connection waits for it.
    pub async fn save(&self) {
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        let mut conn = redis::Client::open(self.url())
            .expect("url")
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .expect("redis reachable");
        let _: () = redis::cmd("SAVE")
            .query_async(&mut conn)
            .await
            .expect("save");
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills and starts it again on the same port (its clients know that one); if another
    /// process took the port meanwhile, tries again for a few seconds.
    pub fn restart(&mut self) {
        self.kill();
        let mut last = String::new();
        for _ in 0..50 {
            match self.spawn() {
                Ok(()) => return,
                Err(said) => last = said,
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("redis-server did not restart on port {}: {last}", self.port);
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until a redis-server started with its stdout piped logs that it accepts connections,
/// then keeps draining its output so it never blocks on a full pipe. When it exits first (its
/// port was taken, a bad flag), it is reaped and what it printed is the error.
pub fn wait_until_ready(mut child: Child) -> Result<Child, Vec<String>> {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut said = Vec::new();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("Ready to accept connections") => break,
            Some(Ok(line)) => said.push(line),
            Some(Err(_)) | None => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(said);
            }
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Ok(child)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A prost message standing in for a database row.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Row {
    #[prost(string, tag = "1")]
    pub title: String,
    #[prost(uint64, tag = "2")]
    pub version: u64,
}
