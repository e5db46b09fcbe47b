//! catalog-svc binary: serve, migrate or seed.
use catalog_svc::cli::{self, Cli};
use clap::Parser;
use learnhub_kit::telemetry;

#[global_allocator]
static ALLOC: learnhub_kit::Allocator = learnhub_kit::Allocator;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    let _telemetry = telemetry::init(
        "catalog-svc",
        env!("CARGO_PKG_VERSION"),
        &cli.log.log_format,
    );
    cli::run(cli.command).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn verify_cli() {
        use clap::CommandFactory;
        catalog_svc::cli::Cli::command().debug_assert();
    }
}
