//! `gateway`: serves learnhub's gRPC, gRPC-Web and REST front door until SIGTERM/SIGINT.
use std::process::ExitCode;

use clap::Parser;
use learnhub_kit::config::LogArgs;

/// learnhub's front door: gRPC, gRPC-Web and REST/JSON on one port.
#[derive(Debug, Parser)]
#[command(name = "gateway", version, about)]
struct Cli {
    #[command(flatten)]
    config: gateway::Config,
    #[command(flatten)]
    log: LogArgs,
}

#[global_allocator]
static ALLOC: learnhub_kit::Allocator = learnhub_kit::Allocator;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let _telemetry =
        learnhub_kit::telemetry::init("gateway", env!("CARGO_PKG_VERSION"), &cli.log.log_format);
    let shutdown = learnhub_kit::shutdown::on_signal();
    let result = match gateway::Application::build(&cli.config).await {
        Ok(app) => app
            .run_until_stopped(shutdown)
            .await
            .map_err(|err| err.to_string()),
        Err(err) => Err(err.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "gateway failed");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        super::Cli::command().debug_assert();
    }
}
