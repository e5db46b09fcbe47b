//! learnhub in one process: the gateway and its services on embedded SQLite, with demo data.
//! The same services run as separate binaries in Kubernetes (see deploy/).
use clap::Parser;

#[global_allocator]
static ALLOC: learnhub_kit::Allocator = learnhub_kit::Allocator;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    learnhub::cli::Cli::parse().run().await
}

#[cfg(test)]
mod tests {
    #[test]
    fn verify_cli() {
        use clap::CommandFactory;
        learnhub::cli::Cli::command().debug_assert();
    }
}
