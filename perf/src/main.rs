//! perf-report binary: parse the command line, run the command.
use clap::Parser;

#[global_allocator]
static ALLOC: learnhub_kit::Allocator = learnhub_kit::Allocator;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    perf_report::cli::Cli::parse().run().await
}

#[cfg(test)]
mod tests {
    #[test]
    fn verify_cli() {
        use clap::CommandFactory;
        perf_report::cli::Cli::command().debug_assert();
    }
}
