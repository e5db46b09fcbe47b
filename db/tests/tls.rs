//! TLS to the real Postgres, per `sslmode`: whether the session is encrypted (`pg_stat_ssl`) and
//! which certificates each mode accepts. The server's own certificate (Debian's self-signed
//! snakeoil, `SHOW ssl_cert_file`) is the root the verifying modes are given.
//!
//! A server with `ssl = off` (a fresh `apt-get install postgresql` may have it) cannot show any
//! of this: the tests that need TLS say so on stderr and pass without checking.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use diesel::{sql_query, sql_types::Bool, sql_types::Text};
use diesel_async::RunQueryDsl;
use diesel_migrations::EmbeddedMigrations;
use learnhub_db::{
    Backend, Db, DbConn, DbError, DbOptions, Migrations, PgTarget, run_migrations,
    testing::{TestDatabase, admin_url},
};
use rustls::{
    client::verify_server_name,
    pki_types::{CertificateDer, ServerName, pem::PemObject},
    server::ParsedCertificate,
};

/// What the tests need to know about the server's TLS; `None` (with the reason printed) when it
/// has none.
struct ServerTls {
    /// PEM file of the server's certificate (self-signed: its own root).
    cert_file: String,
}

async fn server_tls(test: &str) -> Option<ServerTls> {
    let mut conn = PgTarget::parse(&admin_url())
        .unwrap()
        .connect()
        .await
        .unwrap_or_else(|err| panic!("tests need Postgres at {}: {err}", admin_url()));
    let ssl = setting(&mut conn, "ssl").await;
    if ssl != "on" {
        eprintln!(
            "SKIPPED {test}: the Postgres server at {} has ssl = {ssl}",
            admin_url()
        );
        return None;
    }
    Some(ServerTls {
        cert_file: setting(&mut conn, "ssl_cert_file").await,
    })
}

#[derive(diesel::QueryableByName)]
struct Setting {
    #[diesel(sql_type = Text)]
    value: String,
}

async fn setting(conn: &mut learnhub_db::PgConn, name: &str) -> String {
    sql_query(format!("SELECT current_setting('{name}') AS value"))
        .get_result::<Setting>(conn)
        .await
        .unwrap()
        .value
}

/// `TEST_DATABASE_URL` (the `postgres` database by default, only read here) with `params`
/// added, and its host replaced when `host` is given.
fn url_with(host: Option<&str>, params: &str) -> String {
    let url = admin_url();
    match host {
        Some(host) => with_params(&url.replacen("127.0.0.1", host, 1), params),
        None => with_params(&url, params),
    }
}

fn with_params(url: &str, params: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{params}")
}

async fn open(url: &str) -> Result<Db, DbError> {
    Db::connect(&DbOptions {
        url: url.to_owned(),
        pool_size: 1,
        slow_query: Duration::from_secs(1),
        n_plus_one_threshold: 5,
        application_name: "learnhub-tls-test",
    })
    .await
}

#[derive(diesel::QueryableByName)]
struct Ssl {
    #[diesel(sql_type = Bool)]
    ssl: bool,
}

/// What Postgres says of the session of a pooled connection.
async fn session_is_encrypted(db: &Db) -> bool {
    let mut conn = db.conn().await.unwrap();
    let DbConn::Postgres(conn) = &mut conn else {
        panic!("a Postgres URL opened another backend");
    };
    sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .get_result::<Ssl>(&mut **conn)
        .await
        .unwrap()
        .ssl
}

fn names(cert_file: &str, host: &str) -> bool {
    let cert = CertificateDer::from_pem_file(cert_file)
        .unwrap_or_else(|err| panic!("server certificate {cert_file}: {err}"));
    let parsed = ParsedCertificate::try_from(&cert).unwrap();
    verify_server_name(&parsed, &ServerName::try_from(host).unwrap()).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_encrypts_the_session() {
    let Some(_) = server_tls("require_encrypts_the_session").await else {
        return;
    };
    let db = open(&url_with(None, "sslmode=require")).await.unwrap();
    assert!(session_is_encrypted(&db).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_encrypts_the_session_when_the_server_offers_tls() {
    let Some(_) = server_tls("prefer_encrypts_the_session_when_the_server_offers_tls").await else {
        return;
    };
    let db = open(&url_with(None, "sslmode=prefer")).await.unwrap();
    assert!(session_is_encrypted(&db).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_and_no_sslmode_keep_the_session_in_plaintext() {
    let db = open(&url_with(None, "sslmode=disable")).await.unwrap();
    assert!(!session_is_encrypted(&db).await);
    let db = open(&admin_url()).await.unwrap();
    assert!(
        !session_is_encrypted(&db).await,
        "no sslmode stays plaintext, as before TLS support"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_accepts_a_certificate_naming_the_host() {
    let Some(tls) = server_tls("verify_full_accepts_a_certificate_naming_the_host").await else {
        return;
    };
    if !names(&tls.cert_file, "localhost") {
        eprintln!(
            "SKIPPED verify_full_accepts_a_certificate_naming_the_host: {} does not name localhost",
            tls.cert_file
        );
        return;
    }
    let params = format!("sslmode=verify-full&sslrootcert={}", tls.cert_file);
    let db = open(&url_with(Some("localhost"), &params)).await.unwrap();
    assert!(session_is_encrypted(&db).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_refuses_a_certificate_not_naming_the_host() {
    let Some(tls) = server_tls("verify_full_refuses_a_certificate_not_naming_the_host").await
    else {
        return;
    };
    assert!(!names(&tls.cert_file, "127.0.0.1"));
    let params = format!("sslmode=verify-full&sslrootcert={}", tls.cert_file);
    let Err(err) = open(&url_with(Some("127.0.0.1"), &params)).await else {
        panic!("verify-full accepted a certificate that does not name 127.0.0.1");
    };
    let text = err.to_string();
    assert!(err.is_unavailable(), "{text}");
    assert!(
        text.contains("TLS handshake") && text.contains("not valid for name"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_ca_accepts_the_certificate_at_any_host_name() {
    let Some(tls) = server_tls("verify_ca_accepts_the_certificate_at_any_host_name").await else {
        return;
    };
    let params = format!("sslmode=verify-ca&sslrootcert={}", tls.cert_file);
    let db = open(&url_with(Some("127.0.0.1"), &params)).await.unwrap();
    assert!(session_is_encrypted(&db).await);
    // libpq: require with a root certificate is verify-ca.
    let params = format!("sslmode=require&sslrootcert={}", tls.cert_file);
    let db = open(&url_with(Some("127.0.0.1"), &params)).await.unwrap();
    assert!(session_is_encrypted(&db).await);
}

/// Debian links its snakeoil certificate into `/etc/ssl/certs` (`ce275665.0`), so there the
/// system roots trust it; elsewhere they must not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_ca_without_a_root_file_uses_the_system_roots() {
    let Some(tls) = server_tls("verify_ca_without_a_root_file_uses_the_system_roots").await else {
        return;
    };
    let server_cert = CertificateDer::from_pem_file(&tls.cert_file).unwrap();
    let system_trusts_it = rustls_native_certs::load_native_certs()
        .certs
        .contains(&server_cert);
    let opened = open(&url_with(None, "sslmode=verify-ca")).await;
    if system_trusts_it {
        assert!(session_is_encrypted(&opened.unwrap()).await);
    } else {
        let Err(err) = opened else {
            panic!("verify-ca accepted a certificate the system roots do not hold");
        };
        let text = err.to_string();
        assert!(
            text.contains("TLS handshake") && text.contains("UnknownIssuer"),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_sslmode_is_an_error_naming_database_url() {
    let Err(err) = open(&url_with(None, "sslmode=verify_full")).await else {
        panic!("sslmode=verify_full accepted");
    };
    assert!(matches!(err, DbError::BadUrl(_)), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("DATABASE_URL: sslmode=verify_full is not supported"),
        "{err}"
    );
}

fn no_migrations() -> Migrations {
    // An empty set: running it still opens the connection and creates diesel's own table.
    Migrations {
        postgres: EmbeddedMigrations::new(&[]),
        sqlite: EmbeddedMigrations::new(&[]),
        lock_key: 0x7115,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_connect_with_the_urls_sslmode() {
    let Some(tls) = server_tls("migrations_connect_with_the_urls_sslmode").await else {
        return;
    };
    let database = TestDatabase::create(Backend::Postgres).await;
    let url = with_params(database.url(), "sslmode=require");
    assert_eq!(
        run_migrations(&url, no_migrations()).await.unwrap(),
        Vec::<String>::new()
    );
    let params = format!("sslmode=verify-full&sslrootcert={}", tls.cert_file);
    let url = with_params(database.url(), &params);
    let Err(err) = run_migrations(&url, no_migrations()).await else {
        panic!("migrations accepted a certificate that does not name 127.0.0.1");
    };
    assert!(err.to_string().contains("not valid for name"), "{err}");
}
