//! What the numbers were measured on, and whether this machine can hold a scale.
use std::{path::Path, process::Command, time::Duration};

use anyhow::{Context, bail};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::scale::human_bytes;

/// The machine description printed under every table.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_total: u64,
    pub postgres: String,
    pub redis: String,
    pub profile: &'static str,
    pub date: String,
    pub os: String,
    /// `/proc/loadavg` when measuring started: other work on the box shows up here.
    pub load_at_start: String,
}

impl Machine {
    pub fn describe(postgres: String, redis: String) -> Self {
        Self {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: cpu_model(),
            memory_total: meminfo("MemTotal:").unwrap_or(0),
            postgres,
            redis,
            profile: if cfg!(debug_assertions) {
                "debug (numbers are not representative: build with --release)"
            } else {
                "release"
            },
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            os: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| format!("Linux {}", s.trim()))
                .unwrap_or_else(|_| std::env::consts::OS.to_owned()),
            load_at_start: load_average(),
        }
    }

    pub fn markdown(&self) -> String {
        format!(
            "| machine | |\n|---|---|\n\
             | CPUs (nproc) | {} |\n| CPU model | {} |\n| memory | {} |\n| OS | {} |\n\
             | Postgres | {} |\n| Redis | {} |\n| build profile | {} |\n| date | {} |\n\
             | load average (1, 5, 15 min) when measuring started / ended | {} / {} |\n",
            self.cpus,
            self.cpu_model,
            human_bytes(self.memory_total),
            self.os,
            self.postgres,
            self.redis,
            self.profile,
            self.date,
            self.load_at_start,
            load_average()
        )
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_else(|_| "unknown".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// A `/proc/meminfo` field in bytes.
pub fn meminfo(field: &str) -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|line| line.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Free bytes on the filesystem holding `path` (`df -B1 --output=avail`).
pub fn disk_available(path: &Path) -> anyhow::Result<u64> {
    let output = Command::new("df")
        .arg("-B1")
        .arg("--output=avail")
        .arg(path)
        .output()
        .context("running df")?;
    if !output.status.success() {
        bail!(
            "df {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .nth(1)
        .and_then(|line| line.trim().parse().ok())
        .with_context(|| format!("cannot read df's answer for {}", path.display()))
}

/// Refuses when `need` does not fit in `available` (with a tenth kept free).
pub fn check_fits(what: &str, need: u64, available: u64, hint: &str) -> anyhow::Result<()> {
    let usable = available - available / 10;
    if need > usable {
        bail!(
            "not enough {what}: this scale needs about {} but only {} is available \
             (keeping a tenth free). {hint}",
            human_bytes(need),
            human_bytes(available)
        );
    }
    Ok(())
}

/// `redis_version` from `INFO server`, asked over a plain connection (RESP), so perf-report
/// needs no Redis client of its own. Also proves Redis is reachable before anything is written.
pub async fn redis_version(redis_url: &str) -> anyhow::Result<String> {
    let authority = redis_url
        .strip_prefix("redis://")
        .with_context(|| format!("--redis-url must be redis://host:port, got {redis_url:?}"))?;
    let authority = authority.split('/').next().unwrap_or(authority);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:6379")
    };
    let talk = async {
        let mut stream = TcpStream::connect(&host_port).await?;
        stream
            .write_all(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
            .await?;
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await?;
            answer.extend_from_slice(&buf[..n]);
            if n == 0 || resp_complete(&answer) {
                break;
            }
        }
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&answer).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(3), talk)
        .await
        .with_context(|| format!("Redis at {host_port} did not answer within 3 s"))?
        .with_context(|| format!("cannot reach Redis at {host_port}"))?;
    if let Some(error) = text.strip_prefix('-') {
        // NOAUTH and the like: reachable, version unknown.
        return Ok(format!("Redis (version not readable: {})", error.trim()));
    }
    let version = text
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .map(|v| format!("Redis {}", v.trim()))
        .unwrap_or_else(|| "Redis (version unknown)".into());
    Ok(version)
}

/// True once `answer` holds a whole RESP reply: an error/simple line, or a bulk string.
fn resp_complete(answer: &[u8]) -> bool {
    let Some(end) = answer.windows(2).position(|w| w == b"\r\n") else {
        return false;
    };
    match answer.first() {
        Some(b'$') => String::from_utf8_lossy(&answer[1..end])
            .parse::<usize>()
            .map_or(true, |len| answer.len() >= end + 2 + len + 2),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitting_keeps_a_tenth_free_and_names_the_resource() {
        assert!(check_fits("disk", 80, 100, "").is_ok());
        let err = check_fits("disk", 95, 100, "free some space").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("not enough disk"), "{text}");
        assert!(text.contains("free some space"), "{text}");
    }

    #[test]
    fn resp_replies_are_complete_when_their_length_arrived() {
        assert!(!resp_complete(b"$10\r\nabc"));
        assert!(resp_complete(b"$3\r\nabc\r\n"));
        assert!(resp_complete(b"-NOAUTH\r\n"));
        assert!(!resp_complete(b"$3"));
    }

    #[test]
    fn this_machine_can_be_described() {
        assert!(meminfo("MemTotal:").is_some_and(|m| m > 0));
        assert!(disk_available(Path::new("/")).is_ok_and(|a| a > 0));
        let machine = Machine::describe("PostgreSQL x".into(), "Redis y".into());
        let text = machine.markdown();
        assert!(text.contains("PostgreSQL x") && text.contains("Redis y"));
    }
}
