//! The replicas of one service and the choice of one per call, with outlier ejection.
//!
//! Written here rather than taken from tower: tonic's balanced channel is tower's p2c balancer
//! over lazily connecting endpoints, and a lazy endpoint whose replica is gone reports itself
//! ready and fails each call sent to it, so with one of two replicas down half the calls fail,
//! for as long as the name still resolves to it; nor can a caller learn which endpoint a failed
//! call went to, which ejecting it and retrying elsewhere need. This set is small: a list of
//! members (one tonic channel per address), power of two choices on calls in flight, and a
//! member that fails below gRPC is ejected until a TCP probe finds it accepting connections.
use std::{
    net::SocketAddr,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::watch;
use tonic::transport::Channel;

/// How often an ejected replica is probed (each wait jittered by ±50 %).
const PROBE_EVERY: Duration = Duration::from_millis(250);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// One replica: its address (none on the in-memory network) and its connection.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) addr: Option<SocketAddr>,
    pub(crate) channel: Channel,
    in_flight: AtomicUsize,
    ejected: AtomicBool,
}

impl Member {
    pub(crate) fn new(addr: Option<SocketAddr>, channel: Channel) -> Arc<Self> {
        Arc::new(Self {
            addr,
            channel,
            in_flight: AtomicUsize::new(0),
            ejected: AtomicBool::new(false),
        })
    }

    /// Counts a call in flight on this member until the guard is dropped.
    pub(crate) fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    pub(crate) fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }
}

pub(crate) struct InFlight(Arc<Member>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every known replica of `service`, replaced as a whole when resolution or a certificate
/// rotation changes it.
#[derive(Debug)]
pub(crate) struct Replicas {
    service: &'static str,
    members: RwLock<Arc<[Arc<Member>]>>,
    changed: watch::Sender<()>,
}

impl Replicas {
    pub(crate) fn new(service: &'static str, members: Vec<Arc<Member>>) -> Arc<Self> {
        Arc::new(Self {
            service,
            members: RwLock::new(members.into()),
            changed: watch::Sender::new(()),
        })
    }

    pub(crate) fn members(&self) -> Arc<[Arc<Member>]> {
        self.members
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn replace(&self, members: Vec<Arc<Member>>) {
        *self.members.write().unwrap_or_else(PoisonError::into_inner) = members.into();
        self.changed.send_replace(());
    }

    /// A member for the next attempt, other than `not` when there is another, waiting while
    /// there is none at all (a name not resolved yet). The caller bounds the wait.
    pub(crate) async fn next(&self, not: Option<&Arc<Member>>) -> Arc<Member> {
        let mut changed = self.changed.subscribe();
        loop {
            if let Some(member) = choose(&self.members(), not) {
                return member;
            }
            if changed.changed().await.is_err() {
                // Never: `self` holds the sender.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Takes `member` out of the choice after it failed below gRPC (refused the connection, or
    /// dropped it under a call), until it accepts a TCP connection again. A lone replica is
    /// never ejected: there is nowhere else to go, and calling it is what finds it back.
    pub(crate) fn eject(
        self: &Arc<Self>,
        member: &Arc<Member>,
        err: &(dyn std::error::Error + 'static),
    ) {
        let Some(addr) = member.addr else {
            return;
        };
        if self.members().len() < 2 || member.ejected.swap(true, Ordering::AcqRel) {
            return;
        }
        let service = self.service;
        metrics::counter!(EJECTIONS, "peer" => service).increment(1);
        tracing::warn!(
            service,
            %addr,
            err = %chain(err),
            "replica ejected: calls go to the others until it accepts connections"
        );
        let member = Arc::downgrade(member);
        let replicas = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let wait = PROBE_EVERY.mul_f64(0.5 + fastrand::f64());
                tokio::time::sleep(wait).await;
                let (Some(member), Some(replicas)) = (member.upgrade(), replicas.upgrade()) else {
                    return;
                };
                if !replicas.members().iter().any(|m| Arc::ptr_eq(m, &member)) {
                    // Resolved away: nothing to re-admit.
                    return;
                }
                let probe =
                    tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr));
                if let Ok(Ok(_)) = probe.await {
                    member.ejected.store(false, Ordering::Release);
                    tracing::info!(service, %addr, "replica accepts connections again: re-admitted");
                    return;
                }
            }
        });
    }
}

/// `err` and its sources, `: `-separated (tonic's "transport error" alone says nothing).
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(err) = source {
        text.push_str(": ");
        text.push_str(&err.to_string());
        source = err.source();
    }
    text
}

/// `learnhub_rpc_client_ejections_total{peer}`: replicas taken out of the choice.
pub const EJECTIONS: &str = "learnhub_rpc_client_ejections_total";

/// Power of two choices among the members that are not ejected and not `not`: the one with
/// fewer calls in flight. With none such, any member but `not` (all ejected: the call fails
/// fast, or finds a replica back before its probe does), or `not` itself when it is the only
/// one. `None` only when there is no member at all.
fn choose(members: &[Arc<Member>], not: Option<&Arc<Member>>) -> Option<Arc<Member>> {
    if let [only] = members {
        return Some(only.clone());
    }
    let other = |member: &&Arc<Member>| not.is_none_or(|not| !Arc::ptr_eq(not, member));
    let usable = |member: &&Arc<Member>| other(member) && !member.is_ejected();
    let count = members.iter().filter(usable).count();
    match count {
        0 => {
            let others = members.iter().filter(other).count();
            if others == 0 {
                return members.first().cloned();
            }
            members
                .iter()
                .filter(other)
                .nth(fastrand::usize(..others))
                .cloned()
        }
        1 => members.iter().find(usable).cloned(),
        count => {
            let first = fastrand::usize(..count);
            let mut second = fastrand::usize(..count - 1);
            if second >= first {
                second += 1;
            }
            let a = members.iter().filter(usable).nth(first)?;
            let b = members.iter().filter(usable).nth(second)?;
            let busier = |m: &Arc<Member>| m.in_flight.load(Ordering::Relaxed);
            Some(if busier(b) < busier(a) { b } else { a }.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(count: usize) -> Vec<Arc<Member>> {
        (0..count)
            .map(|i| {
                let addr: SocketAddr = ([127, 0, 0, 1], 1000 + i as u16).into();
                let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                    .map(|endpoint| endpoint.connect_lazy());
                Member::new(Some(addr), channel.unwrap_or_else(|err| panic!("{err}")))
            })
            .collect()
    }

    #[tokio::test]
    async fn ejected_and_excluded_members_are_not_chosen_while_others_are_there() {
        let all = members(3);
        all[0].ejected.store(true, Ordering::Relaxed);
        for _ in 0..200 {
            let chosen = choose(&all, Some(&all[1])).unwrap_or_else(|| panic!("none"));
            assert!(Arc::ptr_eq(&chosen, &all[2]));
        }
        // All ejected: still a member, never the excluded one while another exists.
        all[2].ejected.store(true, Ordering::Relaxed);
        all[1].ejected.store(true, Ordering::Relaxed);
        for _ in 0..200 {
            let chosen = choose(&all, Some(&all[1])).unwrap_or_else(|| panic!("none"));
            assert!(!Arc::ptr_eq(&chosen, &all[1]));
        }
        // A lone member is chosen even when excluded: a retry goes back to it.
        let one = members(1);
        assert!(choose(&one, Some(&one[0])).is_some());
        assert!(choose(&[], None).is_none());
    }

    #[tokio::test]
    async fn the_less_busy_of_two_is_chosen() {
        let all = members(2);
        let _busy = [all[0].enter(), all[0].enter()];
        for _ in 0..100 {
            let chosen = choose(&all, None).unwrap_or_else(|| panic!("none"));
            assert!(Arc::ptr_eq(&chosen, &all[1]));
        }
    }
}
