//! The `learnhub` command line: serve the whole platform (monolithic mode) or print a token.
use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use gateway::auth::DEFAULT_MAX_TOKEN_HOURS;

/// Where the SQLite files and the generated token secret live unless `--data-dir` says otherwise.
pub(crate) const DEFAULT_DATA_DIR: &str = "data";

#[derive(Parser)]
#[command(
    name = "learnhub",
    version,
    about = "learnhub in one process: gateway + services on embedded SQLite with demo data",
    long_about = "Runs the whole platform in one process (monolithic mode): the gateway on --listen \
                  and the other services inside the process, reachable only in memory (no port of \
                  their own), storing data in SQLite files under --data-dir \
                  and seeding a demo catalog on first start. Tokens are signed with a secret \
                  generated on first start in <data-dir>/jwt-secret (or --auth-jwt-secret). Run the \
                  services separately against Postgres and Redis for production (see README)."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Where the gateway listens (gRPC, gRPC-Web and REST on one port); loopback unless you
    /// choose to expose it.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Folder for the SQLite databases and the generated token secret `jwt-secret` (created if
    /// missing).
    #[arg(long, env = "DATA_DIR", default_value = DEFAULT_DATA_DIR, global = true)]
    pub data_dir: PathBuf,
    /// Use this Redis for the cache instead of the in-process store (e.g. redis://127.0.0.1:6379).
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// HS256 secret for caller tokens, at least 32 bytes (default: one generated on first start
    /// and kept in <data-dir>/jwt-secret, readable by its owner only).
    #[arg(long, env = "AUTH_JWT_SECRET", hide_env_values = true, global = true)]
    pub auth_jwt_secret: Option<String>,
    /// `text` or `json` logs; filter with RUST_LOG (default info).
    #[arg(long, env = "LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

impl ServeArgs {
    /// The secret given by flag or environment; an empty one (`AUTH_JWT_SECRET=`) counts as
    /// none, like every other empty setting.
    pub(crate) fn given_secret(&self) -> Option<&str> {
        self.auth_jwt_secret
            .as_deref()
            .filter(|secret| !secret.is_empty())
    }
}

#[derive(Subcommand)]
enum Command {
    /// Print a signed token for calling the gateway, with the secret in <data-dir>/jwt-secret
    /// (or AUTH_JWT_SECRET / --auth-jwt-secret when given).
    Token {
        /// An admin token (subject 0).
        #[arg(long, conflicts_with = "user")]
        admin: bool,
        /// A learner token for this user id.
        #[arg(long, required_unless_present = "admin")]
        user: Option<i64>,
        /// Validity in hours (at most the gateway's maximum token lifetime).
        #[arg(long, default_value_t = DEFAULT_MAX_TOKEN_HOURS, value_parser = clap::value_parser!(u64).range(1..=DEFAULT_MAX_TOKEN_HOURS))]
        hours: u64,
    },
}

impl Cli {
    /// Runs the command: `token` prints a token; without one the platform serves until
    /// SIGTERM/SIGINT, or until one of its services fails (then the error names it).
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Some(Command::Token { admin, user, hours }) => {
                let secret = match self.serve.given_secret() {
                    Some(secret) => secret.to_owned(),
                    None => token_secret(&self.serve.data_dir)?,
                };
                println!("{}", token(admin, user, hours, &secret)?);
                Ok(())
            }
            None => crate::monolith::serve(&self.serve).await,
        }
    }
}

/// The secret a running (or earlier) `learnhub` generated in `data_dir`.
fn token_secret(data_dir: &std::path::Path) -> anyhow::Result<String> {
    crate::monolith::stored_secret(data_dir)?.with_context(|| {
        format!(
            "no token secret in {}: start learnhub first (it generates one there), give \
             --data-dir of the learnhub you are calling, or set AUTH_JWT_SECRET to the secret it \
             was started with",
            crate::monolith::secret_path(data_dir).display()
        )
    })
}

/// An admin token (subject 0) or a learner token for `user`, valid `hours`.
fn token(admin: bool, user: Option<i64>, hours: u64, secret: &str) -> anyhow::Result<String> {
    let (subject, role) = match (admin, user) {
        (true, _) => ("0".to_owned(), gateway::auth::Role::Admin),
        (false, Some(id)) if id > 0 => (id.to_string(), gateway::auth::Role::Learner),
        (false, Some(_)) => anyhow::bail!("--user: must be a positive user id"),
        (false, None) => anyhow::bail!("give --admin or --user ID"),
    };
    let ttl = Duration::from_secs(hours * 3600);
    Ok(gateway::auth::issue_token(secret, &subject, role, ttl)?)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};
    use gateway::auth::{Role, TokenVerifier};

    use super::*;

    #[test]
    fn the_gateway_listens_on_loopback_by_default() {
        let command = Cli::command();
        let listen = command
            .get_arguments()
            .find(|arg| arg.get_id() == "listen")
            .unwrap();
        assert_eq!(listen.get_default_values(), ["127.0.0.1:8080"]);
    }

    #[test]
    fn no_secret_is_built_in() {
        let command = Cli::command();
        let secret = command
            .get_arguments()
            .find(|arg| arg.get_id() == "auth_jwt_secret")
            .unwrap();
        assert!(secret.get_default_values().is_empty());
    }

    #[test]
    fn an_empty_secret_counts_as_none() {
        let cli = Cli::try_parse_from(["learnhub", "--auth-jwt-secret", ""]).unwrap();
        assert_eq!(cli.serve.given_secret(), None);
        let cli = Cli::try_parse_from(["learnhub", "--auth-jwt-secret", "s3cret"]).unwrap();
        assert_eq!(cli.serve.given_secret(), Some("s3cret"));
    }

    #[test]
    fn token_takes_the_data_dir_before_or_after_it() {
        for args in [
            ["learnhub", "token", "--admin", "--data-dir", "/srv/lh"],
            ["learnhub", "--data-dir", "/srv/lh", "token", "--admin"],
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            assert_eq!(cli.serve.data_dir, PathBuf::from("/srv/lh"));
            assert!(matches!(
                cli.command,
                Some(Command::Token { admin: true, .. })
            ));
        }
    }

    #[test]
    fn token_hours_stay_within_the_gateway_maximum() {
        let hours = |value: &str| {
            Cli::try_parse_from(["learnhub", "token", "--admin", "--hours", value]).map(|cli| {
                match cli.command {
                    Some(Command::Token { hours, .. }) => hours,
                    None => 0,
                }
            })
        };
        assert_eq!(hours("24").unwrap(), 24);
        assert!(hours("25").is_err());
        assert!(hours("0").is_err());
    }

    #[test]
    fn admin_tokens_carry_subject_0_and_learner_tokens_the_user_id() {
        let secret = "a-test-secret-of-at-least-32-bytes-long";
        let verifier = TokenVerifier::new(secret).unwrap();
        let admin = verifier
            .verify(&token(true, None, 24, secret).unwrap())
            .unwrap();
        assert_eq!((admin.subject.as_str(), admin.role), ("0", Role::Admin));
        let learner = verifier
            .verify(&token(false, Some(7), 1, secret).unwrap())
            .unwrap();
        assert_eq!(learner.user_id(), Some(7));
        assert!(token(false, Some(0), 1, secret).is_err());
        assert!(token(false, Some(-3), 1, secret).is_err());
    }
}
