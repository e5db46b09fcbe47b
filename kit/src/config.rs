//! Command-line flags shared by the services; every flag also reads an environment variable.
/// Log output.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// `text` for people, `json` for log collectors. Filter with RUST_LOG (default `info`).
    #[arg(long, env = "LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}
