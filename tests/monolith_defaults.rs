//! The `learnhub` binary's safe defaults: loopback, a generated owner-only secret that `token`
//! reads and later starts reuse, and refusals that say what to do.
// Helpers outside #[test] fns panic on purpose: a failed set-up is a failed test.
#![cfg(unix)]
#![allow(clippy::unwrap_used)]
use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    thread,
    time::Duration,
};

use gateway::auth::{Role, TokenVerifier};

/// How long a debug build may take to migrate and seed the demo data before its banner.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// `learnhub` with none of its settings inherited from the environment.
fn learnhub(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_learnhub"));
    command.args(args);
    for name in [
        "AUTH_JWT_SECRET",
        "LISTEN_ADDR",
        "DATA_DIR",
        "REDIS_URL",
        "LOG_FORMAT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ] {
        command.env_remove(name);
    }
    command
}

fn run(command: &mut Command) -> Output {
    command.stdin(Stdio::null()).output().unwrap()
}

/// A serving `learnhub`, killed when dropped.
struct Running {
    child: Child,
    port: u16,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `learnhub` on a free loopback port over `data_dir` and waits for its banner.
fn start(data_dir: &Path) -> Running {
    let log = fs::File::create(data_dir.with_extension("log")).unwrap();
    let mut child = learnhub(&["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (port_tx, port_rx) = mpsc::channel();
    thread::spawn(move || {
        for line in stdout.lines() {
            let line = line.unwrap_or_default();
            if let Some(rest) = line
                .trim()
                .strip_prefix("gateway         http://localhost:")
            {
                let port: u16 = rest.split_whitespace().next().unwrap().parse().unwrap();
                let _ = port_tx.send(port);
            }
        }
    });
    let mut running = Running { child, port: 0 };
    running.port = port_rx.recv_timeout(START_TIMEOUT).unwrap_or_else(|_| {
        let log = fs::read_to_string(data_dir.with_extension("log")).unwrap_or_default();
        panic!("learnhub printed no banner; its log:\n{log}")
    });
    running
}

/// The TCP ports process `pid` listens on (Linux: its socket inodes in /proc/PID/fd, matched
/// against the LISTEN rows of /proc/PID/net/tcp and tcp6).
fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    let mut ports: Vec<u16> = ["tcp", "tcp6"]
        .iter()
        .flat_map(|table| {
            let rows = fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
            rows.lines().map(str::to_owned).collect::<Vec<_>>()
        })
        .filter_map(|row| {
            let fields: Vec<&str> = row.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            let listening = *state == "0A" && inodes.iter().any(|own| own == inode);
            let port = local.rsplit_once(':')?.1;
            listening
                .then(|| u16::from_str_radix(port, 16).ok())
                .flatten()
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The HTTP status of `GET path` on the running gateway with `token`.
fn get_status(port: u16, path: &str, token: &str) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn token(args: &[&str], data_dir: &Path) -> Output {
    run(learnhub(&["token"])
        .args(args)
        .arg("--data-dir")
        .arg(data_dir))
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_default_listen_address_is_loopback() {
    let help = run(&mut learnhub(&["--help"]));
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("[default: 127.0.0.1:8080]"), "{help}");
    assert!(!help.contains("0.0.0.0"), "{help}");
}

#[test]
fn the_first_start_creates_an_owner_only_secret_that_token_and_later_starts_reuse() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let secret_file = data_dir.join("jwt-secret");

    // Before any start there is no secret to sign with, and `token` says what to do.
    let refused = token(&["--admin"], &data_dir);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("start learnhub first"),
        "{}",
        stderr(&refused)
    );

    let running = start(&data_dir);
    // The internal services talk in memory: the gateway's port is the process's only one.
    assert_eq!(listening_ports(running.child.id()), vec![running.port]);
    let mode = fs::metadata(&secret_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let secret = fs::read_to_string(&secret_file).unwrap().trim().to_owned();
    assert!(secret.len() >= 32, "{} bytes", secret.len());

    // `token` signs with the data dir's secret, and the running gateway accepts it.
    let output = token(&["--admin"], &data_dir);
    assert!(output.status.success(), "{}", stderr(&output));
    let admin = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let caller = TokenVerifier::new(&secret).unwrap().verify(&admin).unwrap();
    assert_eq!((caller.subject.as_str(), caller.role), ("0", Role::Admin));
    assert_eq!(
        get_status(running.port, "/v1/admin/cache/stats", &admin),
        200
    );
    let output = token(&["--user", "1"], &data_dir);
    let learner = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert_eq!(get_status(running.port, "/v1/me", &learner), 200);
    assert_eq!(
        get_status(running.port, "/v1/admin/cache/stats", &learner),
        403
    );
    drop(running);

    // A later start reuses the secret: tokens issued before it still work.
    let running = start(&data_dir);
    assert_eq!(fs::read_to_string(&secret_file).unwrap().trim(), secret);
    assert_eq!(
        get_status(running.port, "/v1/admin/cache/stats", &admin),
        200
    );
}

#[test]
fn listening_on_every_address_with_a_short_secret_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    // The secret built into earlier versions, then any other short one.
    for secret in ["learnhub-dev-secret-change-me", "change-me"] {
        for (how, mut command) in [
            (
                "flag",
                learnhub(&["--listen", "0.0.0.0:0", "--auth-jwt-secret", secret]),
            ),
            ("env", {
                let mut command = learnhub(&["--listen", "0.0.0.0:0"]);
                command.env("AUTH_JWT_SECRET", secret);
                command
            }),
        ] {
            let output = run(command.arg("--data-dir").arg(&data_dir));
            assert!(!output.status.success(), "{how}");
            let message = stderr(&output);
            assert!(
                message.contains("refusing to listen on 0.0.0.0:0"),
                "{how}: {message}"
            );
            assert!(message.contains("openssl rand -hex 32"), "{how}: {message}");
            assert!(!message.contains(secret), "{how}: {message}");
        }
    }
    // Refused before anything was created.
    assert!(!data_dir.exists());
}

#[test]
fn a_secret_file_others_may_read_stops_the_start_and_token() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    fs::create_dir(&data_dir).unwrap();
    let secret_file = data_dir.join("jwt-secret");
    fs::write(
        &secret_file,
        "a-secret-of-at-least-32-bytes-that-others-can-read\n",
    )
    .unwrap();
    fs::set_permissions(&secret_file, fs::Permissions::from_mode(0o644)).unwrap();
    let fix = format!("chmod 600 {}", secret_file.display());

    let output = run(learnhub(&["--listen", "127.0.0.1:0", "--data-dir"]).arg(&data_dir));
    assert!(!output.status.success());
    assert!(stderr(&output).contains(&fix), "{}", stderr(&output));
    let output = token(&["--admin"], &data_dir);
    assert!(!output.status.success());
    assert!(stderr(&output).contains(&fix), "{}", stderr(&output));
    assert!(!stderr(&output).contains("others-can-read"));
}
