//! Where and how to reach Postgres: a `postgres://` URL with libpq's `sslmode` and `sslrootcert`,
//! connected in plaintext or over TLS with rustls (ring).
//!
//! - absent, `disable`: plaintext (libpq's default is `prefer`; learnhub stays plaintext unless
//!   asked, as it always was);
//! - `prefer`: TLS if the server offers it, else plaintext; the certificate is not checked;
//! - `require`: TLS or no connection; the certificate is not checked (as libpq) — unless
//!   `sslrootcert` is given, which makes it `verify-ca` (as libpq);
//! - `verify-ca`: TLS; the certificate chains to `sslrootcert`, or without it to the system roots
//!   (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured); any host name;
//! - `verify-full`: as `verify-ca`, and the certificate names the URL's host.
//!
//! `sslrootcert=system` means the system roots (libpq 16's spelling).
use std::sync::Arc;

use diesel::{ConnectionError, ConnectionResult};
use diesel_async::AsyncPgConnection;
use percent_encoding::percent_decode_str;
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        verify_server_cert_signed_by_trust_anchor,
    },
    crypto::{CryptoProvider, WebPkiSupportedAlgorithms, ring},
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
    server::ParsedCertificate,
};
use tokio_postgres::NoTls;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::DbError;

/// How a Postgres URL asks for TLS: libpq's `sslmode` values, except `allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, DbError> {
        match value {
            "disable" => Ok(Self::Disable),
            "prefer" => Ok(Self::Prefer),
            "require" => Ok(Self::Require),
            "verify-ca" => Ok(Self::VerifyCa),
            "verify-full" => Ok(Self::VerifyFull),
            other => Err(DbError::BadUrl(format!(
                "DATABASE_URL: sslmode={other} is not supported \
                 (use disable, prefer, require, verify-ca or verify-full)"
            ))),
        }
    }
}

/// A parsed Postgres URL: what tokio-postgres understands, plus the TLS set-up its `sslmode` asks
/// for (certificates are read once, here, so a missing `sslrootcert` fails at start).
#[derive(Clone)]
pub struct PgTarget {
    config: tokio_postgres::Config,
    ssl_mode: SslMode,
    /// `None` for `disable`.
    tls: Option<MakeRustlsConnect>,
}

impl PgTarget {
    pub fn parse(url: &str) -> Result<Self, DbError> {
        let (url, params) = split_tls_params(url);
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|err| DbError::BadUrl(format!("DATABASE_URL: {}", error_chain(&err))))?;
        let roots = params
            .sslrootcert
            .as_deref()
            .filter(|path| *path != "system");
        let ssl_mode = match params.sslmode.as_deref().map(SslMode::parse).transpose()? {
            None | Some(SslMode::Disable) => SslMode::Disable,
            // libpq: "if a root CA file exists, sslmode=require behaves as verify-ca".
            Some(SslMode::Require) if roots.is_some() => SslMode::VerifyCa,
            Some(mode) => mode,
        };
        config.ssl_mode(match ssl_mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        let tls = match ssl_mode {
            SslMode::Disable => None,
            SslMode::Prefer | SslMode::Require => Some(unverified_tls()?),
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let roots = match roots {
                    Some(path) => roots_from_file(path)?,
                    None => system_roots()?,
                };
                Some(verified_tls(roots, ssl_mode == SslMode::VerifyFull)?)
            }
        };
        Ok(Self {
            config,
            ssl_mode,
            tls,
        })
    }

    /// The mode in effect (`require` with `sslrootcert` reads as `verify-ca`).
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// Opens one connection; its I/O is driven by a task on the current runtime.
    pub async fn connect(&self) -> ConnectionResult<AsyncPgConnection> {
        let bad = |err: tokio_postgres::Error| ConnectionError::BadConnection(error_chain(&err));
        match &self.tls {
            None => {
                let (client, connection) = self.config.connect(NoTls).await.map_err(bad)?;
                AsyncPgConnection::try_from_client_and_connection(client, connection).await
            }
            Some(tls) => {
                let (client, connection) = self.config.connect(tls.clone()).await.map_err(bad)?;
                AsyncPgConnection::try_from_client_and_connection(client, connection).await
            }
        }
    }
}

/// The parameters learnhub reads itself; tokio-postgres rejects `verify-*` and `sslrootcert`.
#[derive(Debug, Default, PartialEq)]
struct TlsParams {
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

/// Splits `sslmode` and `sslrootcert` off the URL's query; the rest is left as written.
fn split_tls_params(url: &str) -> (String, TlsParams) {
    let mut params = TlsParams::default();
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), params);
    };
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = || percent_decode_str(value).decode_utf8_lossy().into_owned();
        match key {
            "sslmode" => params.sslmode = Some(value()),
            "sslrootcert" => params.sslrootcert = Some(value()),
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (url, params)
}

/// `tokio_postgres::Error` shows only its kind ("error performing TLS handshake"); the cause
/// says which certificate check failed.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn tls_error(err: impl std::fmt::Display) -> DbError {
    DbError::BadUrl(format!("DATABASE_URL: cannot set up TLS: {err}"))
}

fn roots_from_file(path: &str) -> Result<RootCertStore, DbError> {
    let bad = |err: &dyn std::fmt::Display| {
        DbError::BadUrl(format!("DATABASE_URL: sslrootcert={path}: {err}"))
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|err| bad(&err))? {
        roots
            .add(cert.map_err(|err| bad(&err))?)
            .map_err(|err| bad(&err))?;
    }
    if roots.is_empty() {
        return Err(bad(&"no PEM certificate in the file"));
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, DbError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        return Err(DbError::BadUrl(format!(
            "DATABASE_URL: sslmode verify-ca/verify-full without sslrootcert needs the system's \
             root certificates, and none were found ({})",
            errors.join("; ")
        )));
    }
    Ok(roots)
}

/// `verify-full`: rustls' own WebPKI checks. `verify-ca`: the same chain check, no host name.
fn verified_tls(roots: RootCertStore, check_host: bool) -> Result<MakeRustlsConnect, DbError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?;
    let config = if check_host {
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ServerCertCheck {
                roots: Some(roots),
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth()
    };
    Ok(MakeRustlsConnect::new(config))
}

/// `prefer` / `require`: encrypted, but any certificate is accepted.
fn unverified_tls() -> Result<MakeRustlsConnect, DbError> {
    let provider = provider();
    let config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ServerCertCheck {
            roots: None,
            algorithms: provider.signature_verification_algorithms,
        }))
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// The server-certificate check short of `verify-full`: with `roots`, the chain must end at one
/// of them (`verify-ca`); without, any certificate passes (`require`). The handshake signatures
/// are checked in both cases.
#[derive(Debug)]
struct ServerCertCheck {
    roots: Option<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ServerCertCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_off_the_url_and_the_rest_kept() {
        let (url, params) = split_tls_params(
            "postgres://u:p@h:5432/db?application_name=x&sslmode=verify-full\
             &sslrootcert=%2Fetc%2Fca.pem&connect_timeout=5",
        );
        assert_eq!(
            url,
            "postgres://u:p@h:5432/db?application_name=x&connect_timeout=5"
        );
        assert_eq!(
            params,
            TlsParams {
                sslmode: Some("verify-full".into()),
                sslrootcert: Some("/etc/ca.pem".into()),
            }
        );
        let (url, params) = split_tls_params("postgres://h/db?sslmode=require");
        assert_eq!(url, "postgres://h/db");
        assert_eq!(params.sslmode.as_deref(), Some("require"));
        assert_eq!(
            split_tls_params("postgres://h/db"),
            ("postgres://h/db".to_owned(), TlsParams::default())
        );
    }

    #[test]
    fn each_sslmode_reads_as_libpq_does() {
        let mode = |url: &str| PgTarget::parse(url).map(|target| target.ssl_mode());
        assert_eq!(mode("postgres://h/db").ok(), Some(SslMode::Disable));
        assert_eq!(
            mode("postgres://h/db?sslmode=disable").ok(),
            Some(SslMode::Disable)
        );
        assert_eq!(
            mode("postgres://h/db?sslmode=prefer").ok(),
            Some(SslMode::Prefer)
        );
        assert_eq!(
            mode("postgres://h/db?sslmode=require").ok(),
            Some(SslMode::Require)
        );
    }

    #[test]
    fn an_unknown_sslmode_is_an_error_naming_it() {
        let Err(err) = PgTarget::parse("postgres://u:secret@h/db?sslmode=allow") else {
            panic!("sslmode=allow accepted");
        };
        let text = err.to_string();
        assert!(text.contains("DATABASE_URL: sslmode=allow"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn a_missing_root_certificate_file_is_an_error_naming_it() {
        let Err(err) =
            PgTarget::parse("postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent.pem")
        else {
            panic!("a missing sslrootcert accepted");
        };
        assert!(
            err.to_string()
                .contains("DATABASE_URL: sslrootcert=/nonexistent.pem"),
            "{err}"
        );
    }
}
