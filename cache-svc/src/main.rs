//! `cache-svc serve` runs the service; `cache-svc bench` measures it against raw Redis.
use std::process::ExitCode;

use cache_svc::{Application, Config, bench::BenchArgs};
use clap::{Parser, Subcommand};
use learnhub_kit::config::LogArgs;

#[derive(Debug, Parser)]
#[command(
    name = "cache-svc",
    version,
    about = "learnhub's cache service: the one owner of Redis"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve learnhub.cache.v1 (with health and reflection) until SIGTERM/SIGINT.
    Serve {
        #[command(flatten)]
        config: Config,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Measure Get/Set through cache-svc and raw Redis GET/SET at the same concurrency.
    Bench {
        #[command(flatten)]
        args: BenchArgs,
        #[command(flatten)]
        log: LogArgs,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Serve { config, log } => {
            let _telemetry = learnhub_kit::telemetry::init("cache-svc", &log.log_format);
            serve(config).await
        }
        Command::Bench { args, log } => {
            let _telemetry = learnhub_kit::telemetry::init("cache-svc", &log.log_format);
            cache_svc::bench::run(&args).await.map(drop)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "cache-svc failed");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), cache_svc::Error> {
    let app = Application::build(&config).await?;
    app.run_until_stopped(learnhub_kit::shutdown::on_signal())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        super::Cli::command().debug_assert();
    }
}
