//! The two stores behind cache-svc — Redis and the bounded in-process fallback — with one meaning.
//!
//! Both keep the same model:
//! - an entry lives under its namespace's current *generation*; invalidating `ns:*` bumps the
//!   generation, so every old entry becomes unreachable in O(1);
//! - a miss leaves a *lease marker* (a random token) where the value would go; a Set carrying that
//!   lease stores only while the marker is still there. Delete, a pattern invalidation, a namespace
//!   bump and an unconditional Set all remove or replace the marker, so a value loaded before any
//!   of them can never be stored after it.
use std::time::Duration;

use crate::key::Key;

pub mod memory;
pub mod redis;

pub use memory::MemoryStore;
pub use redis::RedisStore;

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Hit(Vec<u8>),
    /// Pass `lease` to Set so the fill is refused if the key is invalidated in between.
    Miss {
        lease: u64,
    },
}

/// One Set.
#[derive(Debug, Clone)]
pub struct SetEntry {
    pub key: Key,
    pub value: Vec<u8>,
    pub ttl: Duration,
    /// 0: store unconditionally (fresh data from a writer).
    pub lease: u64,
}

/// A fresh lease token: random, so tokens from several cache-svc replicas sharing one Redis never
/// collide, and never 0 (which means "no lease").
pub fn new_lease() -> u64 {
    fastrand::u64(1..=u64::MAX)
}
