//! The production topology in a test: the four service binaries as separate processes on
//! loopback ports, each stopped (SIGKILL, then reaped) when dropped.
// Each test binary that includes this module uses a different part of it.
#![allow(dead_code)]
use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

/// The folder holding this build's binaries (`target/<profile>`), built once per test process:
/// `cargo test -p learnhub` alone does not build the other packages' binaries.
pub fn bin_dir() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test executable path");
            // target/<profile>/deps/<test> → target/<profile>
            let dir = exe
                .parent()
                .and_then(|deps| deps.parent())
                .expect("target/<profile>")
                .to_path_buf();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = Command::new(cargo);
            build.args(["build", "--quiet", "--bins"]);
            for package in ["gateway", "catalog-svc", "enrollment-svc", "cache-svc"] {
                build.args(["-p", package]);
            }
            if dir.file_name().is_some_and(|name| name == "release") {
                build.arg("--release");
            }
            let status = build.status().expect("cargo runs");
            assert!(status.success(), "building the service binaries failed");
            dir
        })
        .clone()
}

/// A free loopback port (bound and released: the service binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// One running service binary.
pub struct Service {
    pub name: &'static str,
    child: Child,
    args: Vec<String>,
    env: Vec<(String, String)>,
    port: u16,
}

impl Service {
    /// Starts `bin args…` with `env` (and a quiet log) and waits until `port` accepts
    /// connections.
    pub fn start(bin: &'static str, args: &[&str], env: &[(&str, String)], port: u16) -> Self {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let child = Self::spawn(bin, &args, &env);
        let mut service = Self {
            name: bin,
            child,
            args,
            env,
            port,
        };
        service.wait_for_port(port);
        service
    }

    fn spawn(bin: &str, args: &[String], env: &[(String, String)]) -> Child {
        let mut command = Command::new(bin_dir().join(bin));
        command
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (key, value) in env {
            command.env(key, value);
        }
        command.spawn().unwrap_or_else(|err| panic!("{bin}: {err}"))
    }

    /// The process id (for /proc/<pid>/status).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The same binary, arguments and environment again, on the same port (after [`Service::kill`]).
    pub fn restart(&mut self) {
        self.child = Self::spawn(self.name, &self.args, &self.env);
        self.wait_for_port(self.port);
    }

    /// A signal by name (`TERM`, `STOP`, `CONT`).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status();
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("reaped")
    }

    fn wait_for_port(&mut self, port: u16) {
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited before it listened: {status}", self.name);
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{} did not listen on {port}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM (the Kubernetes way) and wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().expect("reaped")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a one-shot command of a service binary (e.g. `catalog-svc seed`) and asserts it
/// succeeded.
pub fn run_once(bin: &'static str, args: &[&str], env: &[(&str, String)]) {
    let mut command = Command::new(bin_dir().join(bin));
    command
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let status = command
        .status()
        .unwrap_or_else(|err| panic!("{bin}: {err}"));
    assert!(status.success(), "{bin} {args:?}: {status}");
}

/// The platform's certificates in a folder, laid out as `deploy/dev-certs.sh` makes them:
/// `ca.crt`, and `<service>.crt` + `<service>.key` for each service, under a CA of their own.
pub struct Certificates {
    dir: PathBuf,
    ca: learnhub_kit::tls::DevCa,
}

impl Certificates {
    /// Makes a CA and a certificate for every service into `dir`.
    pub fn write(dir: &std::path::Path) -> Self {
        let ca = learnhub_kit::tls::DevCa::new().expect("a development CA");
        std::fs::write(dir.join("ca.crt"), ca.ca_pem()).expect("ca.crt written");
        for service in learnhub_kit::tls::SERVICES {
            let (cert, key) = ca.issue(service).expect("a service certificate");
            std::fs::write(dir.join(format!("{service}.crt")), cert).expect("certificate written");
            std::fs::write(dir.join(format!("{service}.key")), key).expect("key written");
        }
        Self {
            dir: dir.to_path_buf(),
            ca,
        }
    }

    /// TLS_CERT_FILE, TLS_KEY_FILE and TLS_CA_FILE of `service`.
    pub fn env(&self, service: &str) -> Vec<(&'static str, String)> {
        let path = |file: String| self.dir.join(file).display().to_string();
        vec![
            ("TLS_CERT_FILE", path(format!("{service}.crt"))),
            ("TLS_KEY_FILE", path(format!("{service}.key"))),
            ("TLS_CA_FILE", path("ca.crt".to_owned())),
        ]
    }

    /// A fresh identity of `service` under the same CA, for a test that calls a service itself.
    pub fn identity(&self, service: &'static str) -> std::sync::Arc<learnhub_kit::tls::MutualTls> {
        self.ca.identity(service).expect("an identity")
    }
}
