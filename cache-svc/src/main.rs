//! `cache-svc serve` runs the service; `cache-svc bench` measures it against raw Redis.
use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static ALLOC: learnhub_kit::Allocator = learnhub_kit::Allocator;

#[tokio::main]
async fn main() -> ExitCode {
    match cache_svc::cli::Cli::parse().run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
