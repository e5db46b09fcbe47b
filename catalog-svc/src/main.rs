//! catalog-svc binary: serve, migrate or seed.
use catalog_svc::cli::{self, Cli};
use clap::Parser;
use learnhub_kit::telemetry;

#[global_allocator]
static ALLOC: learnhub_kit::Allocator = learnhub_kit::Allocator;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let _telemetry = telemetry::init(
        "catalog-svc",
        env!("CARGO_PKG_VERSION"),
        &cli.log.log_format,
    );
    // Logged with its message (a returned error would print as Debug).
    match cli::run(cli.command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "catalog-svc failed");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn verify_cli() {
        use clap::CommandFactory;
        catalog_svc::cli::Cli::command().debug_assert();
    }
}
