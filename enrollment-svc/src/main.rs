//! enrollment-svc binary: parses the command line and runs it (see `enrollment_svc::cli`).
use clap::Parser;
use enrollment_svc::cli::Cli;
use learnhub_kit::telemetry;

#[global_allocator]
static ALLOC: learnhub_kit::Allocator = learnhub_kit::Allocator;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let _telemetry = telemetry::init(
        "enrollment-svc",
        env!("CARGO_PKG_VERSION"),
        &cli.log.log_format,
    );
    // Logged with its message (a returned error would print as Debug).
    match cli.command.run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "enrollment-svc failed");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn verify_cli() {
        use clap::CommandFactory;
        enrollment_svc::cli::Cli::command().debug_assert();
    }
}
