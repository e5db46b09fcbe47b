//! Monolithic mode: the whole platform on SQLite files under `--data-dir`, with demo data and a
//! token secret of its own, and a banner saying where it listens and what to try.
use std::{
    fs,
    io::{self, Read, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use gateway::auth::MIN_SECRET_BYTES;
use learnhub_kit::{shutdown, telemetry};

use crate::{
    CacheStore, DemoData, InternalTransport, Platform, PlatformConfig,
    cli::{DEFAULT_DATA_DIR, ServeArgs},
};

/// The file under `--data-dir` holding the generated token secret.
const SECRET_FILE: &str = "jwt-secret";

/// Serves until SIGTERM/SIGINT; a service that fails stops the whole process with its error.
pub(crate) async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let _telemetry = telemetry::init("learnhub", env!("CARGO_PKG_VERSION"), &args.log_format);
    if let Some(secret) = args.given_secret() {
        check_given_secret(&args.listen, secret, &args.data_dir)?;
    }
    fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let secret = match args.given_secret() {
        Some(secret) => secret.to_owned(),
        None => load_or_create_secret(&args.data_dir)?,
    };
    let sqlite = |name: &str| format!("sqlite://{}", args.data_dir.join(name).display());

    let mut config = PlatformConfig::new(sqlite("catalog.db"), sqlite("enrollment.db"), secret);
    config.listen = args.listen.clone();
    config.cache = match &args.redis_url {
        Some(url) => CacheStore::Redis {
            url: url.clone(),
            key_prefix: None,
        },
        None => CacheStore::InProcess,
    };
    config.demo_data = DemoData::CatalogAndLearners;
    // No internal port at all: catalog-svc, enrollment-svc and cache-svc are reachable only from
    // inside this process, over its in-memory network (any local user could call a loopback
    // port).
    config.internal = InternalTransport::InMemory;
    let stop = shutdown::on_signal();
    let platform = Platform::start(&config).await?;
    print_banner(&platform, args);
    platform.run_until_stopped(stop).await?;
    Ok(())
}

/// Refuses a secret given by flag or environment that is short enough to guess or publicly
/// known (the retired built-in dev secret had 29 bytes): beyond loopback, anyone who reaches the
/// port could sign an admin token with it. The gateway refuses such a secret everywhere; this
/// says so before anything starts, and what to do.
fn check_given_secret(listen: &str, secret: &str, data_dir: &Path) -> anyhow::Result<()> {
    if secret.len() >= MIN_SECRET_BYTES {
        return Ok(());
    }
    let fix = format!(
        "leave --auth-jwt-secret and AUTH_JWT_SECRET unset to use the secret generated in {}, or \
         give one of at least {MIN_SECRET_BYTES} random bytes (e.g. `openssl rand -hex 32`)",
        secret_path(data_dir).display()
    );
    if is_loopback(listen) {
        bail!("--auth-jwt-secret must be at least {MIN_SECRET_BYTES} bytes: {fix}");
    }
    bail!(
        "refusing to listen on {listen} with a short or publicly known token secret: anyone who \
         can reach the port could sign an admin token. Listen on 127.0.0.1 (the default), or {fix}"
    )
}

/// True for 127.0.0.0/8, ::1 (also written ::ffff:127.x.y.z) and `localhost`.
fn is_loopback(listen: &str) -> bool {
    match listen.parse::<SocketAddr>() {
        Ok(addr) => addr.ip().to_canonical().is_loopback(),
        Err(_) => listen
            .rsplit_once(':')
            .is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost")),
    }
}

/// `<data-dir>/jwt-secret`.
pub(crate) fn secret_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SECRET_FILE)
}

/// The data dir's token secret, generated on first start: 32 bytes from the OS RNG, hex-encoded,
/// in a file only its owner may read. Later starts and `learnhub token` read it back.
pub(crate) fn load_or_create_secret(data_dir: &Path) -> anyhow::Result<String> {
    if let Some(secret) = stored_secret(data_dir)? {
        return Ok(secret);
    }
    let path = secret_path(data_dir);
    create_secret(&path)?;
    stored_secret(data_dir)?.with_context(|| format!("{} vanished once created", path.display()))
}

/// The data dir's token secret; `None` when there is none yet. A file others may read or change,
/// or one holding too short a secret, is refused with what to do about it.
pub(crate) fn stored_secret(data_dir: &Path) -> anyhow::Result<Option<String>> {
    let path = secret_path(data_dir);
    let mut file = match fs::File::open(&path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("cannot open {}", path.display())),
    };
    // The open file's own metadata: what is checked is what is read.
    let metadata = file
        .metadata()
        .with_context(|| format!("cannot inspect {}", path.display()))?;
    if !metadata.is_file() {
        bail!(
            "{} is not a regular file: remove it, and learnhub generates a new secret there on \
             its next start",
            path.display()
        );
    }
    check_owner_only(&path, &metadata)?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let secret = text.trim();
    if secret.len() < MIN_SECRET_BYTES {
        bail!(
            "{} holds a secret shorter than {MIN_SECRET_BYTES} bytes: delete the file, and \
             learnhub generates a new one on its next start (tokens signed with the old one stop \
             working)",
            path.display()
        );
    }
    Ok(Some(secret.to_owned()))
}

/// Refuses a secret file that other users may read or write.
#[cfg(unix)]
fn check_owner_only(path: &Path, metadata: &fs::Metadata) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "{path} holds the token signing secret but its mode {mode:03o} lets other users read \
             or change it: run `chmod 600 {path}` (or, if someone else may have read it, delete \
             it: learnhub then generates a new secret and tokens signed with the old one stop \
             working)",
            path = path.display()
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_owner_only(_: &Path, _: &fs::Metadata) -> anyhow::Result<()> {
    Ok(())
}

/// Writes a new secret to `path` unless one is there: written in full under a temporary name,
/// then hard-linked into place (which never replaces a file), so no reader sees half a secret
/// and, of two first starts, one secret wins for both.
fn create_secret(path: &Path) -> anyhow::Result<()> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|err| anyhow::anyhow!("cannot get random bytes from the OS: {err}"))?;
    let secret: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    let nonce = getrandom::u64()
        .map_err(|err| anyhow::anyhow!("cannot get random bytes from the OS: {err}"))?;
    let temporary = path.with_file_name(format!(".{SECRET_FILE}.{nonce:016x}.tmp"));
    let created =
        write_owner_only(&temporary, &secret).and_then(|()| fs::hard_link(&temporary, path));
    let _ = fs::remove_file(&temporary);
    match created {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(err).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// A new file with `secret` and a newline, mode 0600 from its creation on (never readable by
/// others, even for a moment), flushed to disk.
fn write_owner_only(path: &Path, secret: &str) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(secret.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

fn print_banner(platform: &Platform, args: &ServeArgs) {
    let port = platform.gateway_addr().port();
    let store = match &args.redis_url {
        Some(_) => "Redis",
        None => "in-process store",
    };
    // `token` must find the same secret: the same data dir, or the same AUTH_JWT_SECRET.
    let token = match args.data_dir.as_path() {
        dir if dir == Path::new(DEFAULT_DATA_DIR) => "token".to_owned(),
        dir => format!("token --data-dir '{}'", dir.display()),
    };
    let secret = match args.given_secret() {
        Some(_) => "from --auth-jwt-secret / AUTH_JWT_SECRET (give `token` the same)".to_owned(),
        None => secret_path(&args.data_dir).display().to_string(),
    };
    println!(
        "\nlearnhub is running (monolithic mode: SQLite in {data}/, cache: {store})\n\
         \n  gateway         http://localhost:{port}   gRPC + gRPC-Web + REST\
         \n  catalog-svc, enrollment-svc, cache-svc: in this process, no port of their own\
         \n  token secret    {secret}\n\
         \nTry:\
         \n  curl -s 'http://localhost:{port}/v1/catalog?type=python&page_size=3'\
         \n  curl -s http://localhost:{port}/v1/courses/1\
         \n  curl -s http://localhost:{port}/v1/categories\
         \n  grpcurl -plaintext localhost:{port} list\
         \n  grpcurl -plaintext -d '{{\"page_size\": 3}}' localhost:{port} learnhub.gateway.v1.GatewayService/GetCatalogPage\
         \n  TOKEN=$(cargo run --release -q -- {token} --admin)\
         \n  curl -s -X POST -H \"Authorization: Bearer $TOKEN\" http://localhost:{port}/v1/admin/courses/3/archive\
         \n  curl -s -H \"Authorization: Bearer $TOKEN\" http://localhost:{port}/v1/admin/cache/stats\
         \n  LEARNER=$(cargo run --release -q -- {token} --user 1)     # demo learner1@example.com\
         \n  curl -s -H \"Authorization: Bearer $LEARNER\" http://localhost:{port}/v1/me/enrollments\
         \n  curl -s -H \"Authorization: Bearer $LEARNER\" 'http://localhost:{port}/v1/catalog?page_size=5'\
         \n\nCtrl-C stops it.\n",
        data = args.data_dir.display(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_127_0_0_0_8_ipv6_1_and_localhost() {
        for listen in [
            "127.0.0.1:8080",
            "127.1.2.3:80",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:8080",
            "localhost:8080",
            "LOCALHOST:0",
        ] {
            assert!(is_loopback(listen), "{listen}");
        }
        for listen in [
            "0.0.0.0:8080",
            "[::]:8080",
            "192.168.1.10:8080",
            "10.0.0.1:80",
            "[::ffff:10.0.0.1]:80",
            "example.com:8080",
            "localhost.example.com:8080",
        ] {
            assert!(!is_loopback(listen), "{listen}");
        }
    }

    #[test]
    fn a_short_or_known_secret_is_refused_beyond_loopback_with_what_to_do() {
        let data = Path::new("data");
        for secret in ["learnhub-dev-secret-change-me", "change-me", ""] {
            for listen in ["0.0.0.0:8080", "[::]:8080", "192.168.1.10:8080"] {
                let err = check_given_secret(listen, secret, data)
                    .unwrap_err()
                    .to_string();
                assert!(
                    err.contains(&format!("refusing to listen on {listen}")),
                    "{err}"
                );
                assert!(err.contains("data/jwt-secret"), "{err}");
                assert!(err.contains("openssl rand -hex 32"), "{err}");
                assert!(secret.is_empty() || !err.contains(secret), "{err}");
            }
            // The gateway refuses it on loopback too; this says what to do instead.
            let err = check_given_secret("127.0.0.1:8080", secret, data)
                .unwrap_err()
                .to_string();
            assert!(err.contains("at least 32 bytes"), "{err}");
        }
        let strong = "a-random-secret-of-at-least-32-bytes";
        for listen in ["0.0.0.0:8080", "127.0.0.1:8080"] {
            assert!(check_given_secret(listen, strong, data).is_ok());
        }
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_secret_file_is_created_owner_only_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(stored_secret(dir.path()).unwrap(), None);
        let secret = load_or_create_secret(dir.path()).unwrap();
        assert_eq!(secret.len(), 64);
        assert!(secret.bytes().all(|byte| byte.is_ascii_hexdigit()));
        #[cfg(unix)]
        assert_eq!(mode(&secret_path(dir.path())), 0o600);
        assert_eq!(load_or_create_secret(dir.path()).unwrap(), secret);
        assert_eq!(stored_secret(dir.path()).unwrap(), Some(secret.clone()));
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, [SECRET_FILE]);
        // Another data dir gets another secret.
        let other = tempfile::tempdir().unwrap();
        assert_ne!(load_or_create_secret(other.path()).unwrap(), secret);
    }

    #[test]
    fn racing_first_starts_share_one_secret() {
        let dir = tempfile::tempdir().unwrap();
        let secrets: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| load_or_create_secret(dir.path()).unwrap()))
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().unwrap())
                .collect()
        });
        assert!(secrets.iter().all(|secret| *secret == secrets[0]));
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_file_others_may_read_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let secret = load_or_create_secret(dir.path()).unwrap();
        let path = secret_path(dir.path());
        for loose in [0o644, 0o640, 0o604, 0o660, 0o666] {
            fs::set_permissions(&path, fs::Permissions::from_mode(loose)).unwrap();
            let err = load_or_create_secret(dir.path()).unwrap_err().to_string();
            assert!(
                err.contains(&format!("chmod 600 {}", path.display())),
                "{err}"
            );
            assert!(!err.contains(&secret), "{err}");
            assert!(stored_secret(dir.path()).is_err());
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load_or_create_secret(dir.path()).unwrap(), secret);
        // Owner-only but stricter still is fine.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(stored_secret(dir.path()).unwrap(), Some(secret));
    }

    #[test]
    fn a_short_secret_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write_owner_only(&secret_path(dir.path()), "too-short").unwrap();
        let err = load_or_create_secret(dir.path()).unwrap_err().to_string();
        assert!(err.contains("shorter than 32 bytes"), "{err}");
        assert!(!err.contains("too-short"), "{err}");
    }
}
