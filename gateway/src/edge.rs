//! The gateway's HTTP edge: its configuration (CORS origins, HSTS, reflection) and the layers
//! every request passes before any route, health and reflection included — request id and
//! access log outermost, then CORS, then the request-size limits.
use axum::middleware;
use learnhub_kit::server::Reflection;
use tonic::service::Routes;

use crate::{access, cors::CorsPolicy, error::Error, request_size, rest::headers::SecurityHeaders};

/// `GRPC_REFLECTION`: `on` lists the gateway's own services (and health), `off` serves none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ReflectionSwitch {
    #[default]
    On,
    Off,
}

/// The HTTP surface's settings; every flag also reads its environment variable.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EdgeConfig {
    /// Origins browsers may call from (CORS for REST and gRPC-Web), comma-separated, each
    /// `scheme://host[:port]`. Empty: no CORS headers at all.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Vec<String>,
    /// `Strict-Transport-Security: max-age=<secs>` on REST answers. Set it only when browsers
    /// reach the gateway over HTTPS (the gateway itself does not terminate TLS). Unset: no HSTS.
    #[arg(long, env = "HSTS_MAX_AGE_SECS")]
    pub hsts_max_age_secs: Option<u64>,
    /// gRPC server reflection: `on` lists the gateway's own services and health only, `off`
    /// serves no reflection.
    #[arg(long, env = "GRPC_REFLECTION", value_enum, default_value_t = ReflectionSwitch::On)]
    pub grpc_reflection: ReflectionSwitch,
}

/// The edge built from [`EdgeConfig`].
#[derive(Debug, Clone)]
pub struct Edge {
    cors: CorsPolicy,
    pub security: SecurityHeaders,
    pub reflection: Reflection,
}

impl Edge {
    pub fn new(config: &EdgeConfig) -> Result<Self, Error> {
        let cors =
            CorsPolicy::new(&config.cors_allowed_origins).map_err(|reason| Error::Config {
                flag: "--cors-allowed-origins",
                reason,
            })?;
        Ok(Self {
            cors,
            security: SecurityHeaders::new(config.hsts_max_age_secs),
            reflection: match config.grpc_reflection {
                ReflectionSwitch::On => Reflection::OwnServices,
                ReflectionSwitch::Off => Reflection::Off,
            },
        })
    }

    /// `routes` (with their probes) behind the edge layers; the last layer added is outermost.
    pub fn layer(&self, routes: Routes) -> Routes {
        Routes::from(
            routes
                .into_axum_router()
                .layer(middleware::from_fn(request_size::refuse_oversize))
                .layer(middleware::from_fn_with_state(
                    self.cors.clone(),
                    crate::cors::apply,
                ))
                .layer(middleware::from_fn(access::observe)),
        )
    }
}
