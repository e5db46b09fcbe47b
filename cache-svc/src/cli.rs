//! The `cache-svc` command line: `serve` runs the service; `bench` measures it against raw Redis.
use clap::{Parser, Subcommand};
use learnhub_kit::config::LogArgs;

use crate::{Application, Config, bench::BenchArgs};

#[derive(Debug, Parser)]
#[command(
    name = "cache-svc",
    version,
    about = "learnhub's cache service: the one owner of Redis"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve learnhub.cache.v1 (with health and reflection) until SIGTERM/SIGINT.
    Serve {
        // Boxed: the settings are much larger than the benchmark's.
        #[command(flatten)]
        config: Box<Config>,
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

impl Cli {
    /// Runs the command; failures are logged before they are returned.
    pub async fn run(self) -> Result<(), crate::Error> {
        let result = match self.command {
            Command::Serve { config, log } => {
                let _telemetry = learnhub_kit::telemetry::init(
                    "cache-svc",
                    env!("CARGO_PKG_VERSION"),
                    &log.log_format,
                );
                serve(*config).await
            }
            Command::Bench { args, log } => {
                let _telemetry = learnhub_kit::telemetry::init(
                    "cache-svc",
                    env!("CARGO_PKG_VERSION"),
                    &log.log_format,
                );
                crate::bench::run(&args).await.map(drop)
            }
        };
        if let Err(err) = &result {
            tracing::error!(error = %err, "cache-svc failed");
        }
        result
    }
}

async fn serve(config: Config) -> Result<(), crate::Error> {
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
