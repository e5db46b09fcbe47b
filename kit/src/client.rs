//! Channels to other learnhub services. On Kubernetes the back ends sit behind headless
//! Services; HTTP/2 would pin every call to the one pod a ClusterIP picked, so a host name is
//! re-resolved periodically and calls are balanced over every address it returns (tonic has no
//! resolver of its own, hence this small loop).
use std::{collections::HashSet, net::SocketAddr, time::Duration};

use tonic::transport::{Channel, Endpoint, Uri, channel::Change};

/// How often a host name is resolved again.
const RESOLVE_EVERY: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
#[error("{flag}: {reason}")]
pub struct BadAddress {
    pub flag: &'static str,
    pub reason: String,
}

/// A lazily connecting channel to `addr` (`http://host:port`), so a service starts before its
/// dependencies. An IP literal gets one endpoint; a host name is balanced over its addresses.
/// `flag` names the setting in errors (e.g. `CATALOG_ADDR`).
pub fn channel(flag: &'static str, addr: &str) -> Result<Channel, BadAddress> {
    let bad = |reason: String| BadAddress { flag, reason };
    let uri: Uri = addr
        .parse()
        .map_err(|err| bad(format!("{addr:?} is not a URI: {err}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad(format!("{addr:?} must start with http://")));
    }
    let host = uri
        .host()
        .ok_or_else(|| bad(format!("{addr:?} has no host")))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_owned();
    let port = uri
        .port_u16()
        .ok_or_else(|| bad(format!("{addr:?} has no port")))?;
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(endpoint(&uri.to_string())
            .map_err(|err| bad(err.to_string()))?
            .connect_lazy());
    }
    let (channel, changes) = Channel::balance_channel::<SocketAddr>(64);
    tokio::spawn(async move {
        let mut known: HashSet<SocketAddr> = HashSet::new();
        loop {
            match tokio::net::lookup_host((host.as_str(), port)).await {
                Ok(found) => {
                    let found: HashSet<SocketAddr> = found.collect();
                    for gone in known.difference(&found) {
                        if changes.send(Change::Remove(*gone)).await.is_err() {
                            return;
                        }
                    }
                    for new in found.difference(&known) {
                        let Ok(endpoint) = endpoint(&format!("http://{new}")) else {
                            continue;
                        };
                        if changes.send(Change::Insert(*new, endpoint)).await.is_err() {
                            return;
                        }
                    }
                    known = found;
                }
                // Keep the last known addresses: a DNS hiccup must not empty the pool.
                Err(err) => tracing::warn!(%host, %err, "cannot resolve; keeping known addresses"),
            }
            if changes.is_closed() {
                return;
            }
            tokio::time::sleep(RESOLVE_EVERY).await;
        }
    });
    Ok(channel)
}

fn endpoint(uri: &str) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(uri.to_owned())?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_what_is_not_an_http_address() {
        for bad in [
            "127.0.0.1:50051",
            "https://catalog:443",
            "http://catalog",
            "not a uri",
        ] {
            assert!(channel("CATALOG_ADDR", bad).is_err(), "{bad}");
        }
        assert!(channel("CATALOG_ADDR", "http://127.0.0.1:50051").is_ok());
        assert!(channel("CATALOG_ADDR", "http://localhost:50051").is_ok());
    }
}
