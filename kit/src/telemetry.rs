//! Logging set-up: RUST_LOG filters (default `info`), LOG_FORMAT picks text or JSON.
use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the global subscriber once; later calls (tests, the monolith) are no-ops.
pub fn init(log_format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    // Logs go to stderr, keeping stdout for what a command prints (the monolith's banner, seed
    // reports); colours only when a person is watching.
    let result = if log_format == "json" {
        let layer = fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr);
        registry.with(layer).try_init()
    } else {
        let layer = fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr);
        registry.with(layer).try_init()
    };
    // Already installed (several services in one process): keep the first.
    drop(result);
}
