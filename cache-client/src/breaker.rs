//! A circuit breaker: after enough consecutive failures the cache is skipped for a cool-down,
//! then one call probes it, so a dead cache-svc does not add its timeout to every request.
use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

#[derive(Debug, Clone, Copy)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is in flight; if it never reports (its caller was cancelled), another may probe
    /// after a further cool-down.
    Probing {
        retry_at: Instant,
    },
}

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    /// Whether this call may use the cache (a `true` while open makes the caller the probe).
    pub fn allow(&self) -> bool {
        let mut state = self.lock();
        let now = Instant::now();
        match *state {
            State::Closed { .. } => true,
            State::Open { until } | State::Probing { retry_at: until } if now < until => false,
            State::Open { .. } | State::Probing { .. } => {
                *state = State::Probing {
                    retry_at: now + self.cooldown,
                };
                true
            }
        }
    }

    pub fn success(&self) {
        *self.lock() = State::Closed { failures: 0 };
    }

    pub fn failure(&self) {
        let mut state = self.lock();
        let open = State::Open {
            until: Instant::now() + self.cooldown,
        };
        *state = match *state {
            State::Closed { failures } if failures + 1 < self.threshold => State::Closed {
                failures: failures + 1,
            },
            _ => open,
        };
    }

    /// Open and still cooling down: no call goes, not even one asked for before it opened (a
    /// probing breaker lets its one probe through).
    pub fn refusing(&self) -> bool {
        matches!(*self.lock(), State::Open { until } if Instant::now() < until)
    }

    pub fn is_open(&self) -> bool {
        !matches!(*self.lock(), State::Closed { .. })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_probes_after_cooldown() {
        let breaker = Breaker::new(3, Duration::ZERO);
        breaker.failure();
        breaker.failure();
        assert!(!breaker.is_open());
        breaker.failure();
        assert!(breaker.is_open());
        // Zero cool-down: the next call is the probe; a second one waits for it.
        assert!(breaker.allow());
        breaker.success();
        assert!(!breaker.is_open());
    }

    #[test]
    fn stays_open_during_cooldown() {
        let breaker = Breaker::new(1, Duration::from_secs(3600));
        assert!(!breaker.refusing());
        breaker.failure();
        assert!(!breaker.allow());
        assert!(!breaker.allow());
        assert!(breaker.refusing());
    }

    #[test]
    fn a_probing_breaker_lets_its_probe_through() {
        let breaker = Breaker::new(1, Duration::ZERO);
        breaker.failure();
        assert!(breaker.allow());
        assert!(breaker.is_open() && !breaker.refusing());
    }
}
