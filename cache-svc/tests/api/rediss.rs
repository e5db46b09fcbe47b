//! Redis over TLS (`rediss://`): a private redis-server listening only on a TLS port, with a
//! certificate for `localhost` from a CA made for the test (so no system root trusts it).
use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use cache_svc::Config;
use learnhub_kit::tls::DevCa;
use redis::TlsCertificates;

use crate::helpers::{count_keys, free_port, spawn_app_with, test_config, wait_until_ready};

/// redis-server with `--port 0` (no plaintext listener) and `--tls-port`, killed on drop.
struct TlsRedis {
    child: Child,
    port: u16,
    dir: PathBuf,
    ca_pem: String,
}

impl TlsRedis {
    /// Port 0 would turn the listener off, so a free port is picked here; when a parallel test
    /// takes it first, redis-server exits and another one is tried.
    fn start() -> Self {
        let ca = DevCa::new().unwrap();
        let (cert, key) = ca.issue("localhost").unwrap();
        let dir = std::env::temp_dir().join(format!("cache-svc-test-rediss-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert.pem"), cert).unwrap();
        std::fs::write(dir.join("key.pem"), key).unwrap();
        let mut said = Vec::new();
        for _ in 0..20 {
            let port = free_port();
            match spawn(&dir, port) {
                Ok(child) => {
                    return Self {
                        child,
                        port,
                        dir,
                        ca_pem: ca.ca_pem(),
                    };
                }
                Err(output) => said = output,
            }
        }
        panic!(
            "redis-server with --tls-port did not start:\n{}",
            said.join("\n")
        );
    }

    /// `fragment`: `""`, or `"#insecure"` to skip the certificate check.
    fn url(&self, fragment: &str) -> String {
        format!("rediss://localhost:{}/{fragment}", self.port)
    }
}

/// Starts redis-server and returns once it accepts connections; its output when it exits first.
fn spawn(dir: &std::path::Path, port: u16) -> Result<Child, Vec<String>> {
    let child = Command::new("redis-server")
        .args(["--port", "0", "--tls-port", &port.to_string()])
        .args(["--bind", "127.0.0.1", "-::1"])
        .arg("--tls-cert-file")
        .arg(dir.join("cert.pem"))
        .arg("--tls-key-file")
        .arg(dir.join("key.pem"))
        .args([
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server runs");
    wait_until_ready(child)
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn cache_svc_stores_in_redis_over_tls_with_an_insecure_url() {
    let redis = TlsRedis::start();
    let app = spawn_app_with(Config {
        redis_url: Some(redis.url("#insecure")),
        ..test_config()
    })
    .await;
    let stats = app.stats().await;
    assert_eq!(stats.store, "redis");
    assert!(stats.redis_connected);
    assert!(app.set("tls:greeting", b"hello", 60).await);
    assert_eq!(
        app.get("tls:greeting").await.as_deref(),
        Some(&b"hello"[..])
    );
    // The value is in the TLS-only Redis (it has no plaintext port to have reached it otherwise).
    assert_eq!(
        count_keys(&redis.url("#insecure"), &app.config.key_prefix, "greeting").await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn a_rediss_url_checks_the_certificate_against_the_trusted_roots() {
    let redis = TlsRedis::start();

    // The test CA is in no system store: the service cannot use this Redis and serves from memory.
    let app = spawn_app_with(Config {
        redis_url: Some(redis.url("")),
        redis_timeout_ms: 300,
        ..test_config()
    })
    .await;
    let stats = app.stats().await;
    assert_eq!(stats.store, "memory");
    assert!(!stats.redis_connected);
    app.stop_keep_data().await;

    // Why: the same URL in a plain client fails the certificate check.
    let refused = redis::Client::open(redis.url(""))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .map(drop)
        .unwrap_err()
        .to_string();
    assert!(refused.contains("UnknownIssuer"), "{refused}");

    // With the CA as a root the same check passes (what SSL_CERT_FILE gives cache-svc).
    let trusting = redis::Client::build_with_tls(
        redis.url(""),
        TlsCertificates {
            client_tls: None,
            root_cert: Some(redis.ca_pem.clone().into_bytes()),
        },
    )
    .unwrap();
    let mut conn = trusting.get_multiplexed_async_connection().await.unwrap();
    let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    assert_eq!(pong, "PONG");
}
