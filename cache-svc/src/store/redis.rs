//! The Redis store: one Lua script per operation keeps it atomic; batches go in one pipeline.
//!
//! Key layout under the prefix `P` (every key this store touches starts with `P`):
//! - `P{ns}@{gen}{rest}`  an entry: `v` + value bytes, or a lease marker `l` + token;
//! - `P{ns}#gen`          the namespace generation (no TTL, never reset, see [`GENERATION_LUA`]);
//! - `P{ns}#idx@{gen}`    sorted set of the generation's values (member `rest`, score = expiry in
//!   ms): live counts in O(log N) and the list a background sweep deletes after a bump;
//! - `P#namespaces`       set of namespaces ever written; `P#trash` old generations to sweep;
//! - `P#epoch`            the marker (no TTL) that this Redis holds something under the prefix,
//!   written with the first generation: when it is missing on reconnect and no generation exists
//!   either, Redis lost everything (restarted empty) and the outage journal needs no replay (see
//!   [`RedisStore::check_empty`]).
//!
//! Namespaces hold no `@`, `#` or `:`, so these families never collide. The scripts build key
//! names from ARGV, which a single Redis (not Redis Cluster) allows.
//!
//! Every round trip is one [`Command`]: a span `redis {COMMAND}` (a child of the span current
//! when it is made — the Get/Set handler's — and none for background upkeep, which no request
//! waits for) and a sample of `learnhub_cache_redis_duration_seconds{command}`.
use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tracing::{Instrument, field::Empty};

use redis::{
    AsyncConnectionConfig, ErrorKind, FromRedisValue, Pipeline, Script, ServerErrorKind,
    aio::MultiplexedConnection,
};

use super::{Lookup, SetEntry, new_lease};
use crate::{
    error::Error,
    key::{Key, Pattern, escape_glob},
    stats::Stats,
};

/// Keys per SCAN step and per UNLINK batch: large enough to be fast on big keyspaces, small enough
/// that no single Redis call blocks for more than a few milliseconds.
pub const BATCH: usize = 1000;

const TAG_VALUE: u8 = b'v';
const TAG_LEASE: u8 = b'l';

/// Shared Lua helpers, prepended to every script.
///
/// The generation is read with GET and never written with a TTL, so it cannot expire, and
/// `volatile-*` eviction never picks it. Making one also writes the epoch marker `P#epoch` (NX, no
/// TTL): Redis holds something of this store from then on. If it is missing anyway (deleted by hand, evicted under an
/// `allkeys-*` policy, Redis restarted empty) it restarts from the current time in microseconds:
/// larger than any value it held before unless the namespace was bumped more than a million times
/// per second on average since that earlier start — so a generation never goes back to a value
/// whose old entries might still exist.
const GENERATION_LUA: &str = r"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function generation(base, epoch)
  local g = redis.call('GET', base .. '#gen')
  if g then return g end
  local t = redis.call('TIME')
  g = string.format('%d', tonumber(t[1]) * 1000000 + tonumber(t[2]))
  redis.call('SET', base .. '#gen', g)
  redis.call('SET', epoch, g, 'NX')
  return g
end
";

/// ARGV: base (`P{ns}`), rest, new lease token, lease TTL ms, epoch marker. Returns the entry or
/// the lease marker left, and the generation (which later lookups of the namespace try first).
const GET_LUA: &str = r"
local g = generation(ARGV[1], ARGV[5])
local key = ARGV[1] .. '@' .. g .. ARGV[2]
local v = redis.call('GET', key)
if v then return {v, g} end
local marker = 'l' .. ARGV[3]
redis.call('SET', key, marker, 'PX', ARGV[4])
return {marker, g}
";

/// Namespaces whose generation [`RedisStore::get_many`] remembers.
const MAX_GENERATIONS_SEEN: usize = 1024;

/// ARGV: base, rest, tagged value, TTL ms, lease ('0': unconditional), namespaces set, namespace,
/// epoch marker. Returns 1 if stored, 0 if the lease's marker is gone (invalidated) or replaced.
const SET_LUA: &str = r"
local g = generation(ARGV[1], ARGV[8])
local key = ARGV[1] .. '@' .. g .. ARGV[2]
if ARGV[5] ~= '0' then
  local marker = 'l' .. ARGV[5]
  if redis.call('GETRANGE', key, 0, #marker - 1) ~= marker then return 0 end
end
redis.call('SET', key, ARGV[3], 'PX', ARGV[4])
redis.call('ZADD', ARGV[1] .. '#idx@' .. g, string.format('%d', now_ms() + tonumber(ARGV[4])), ARGV[2])
redis.call('SADD', ARGV[6], ARGV[7])
return 1
";

/// ARGV: base, rest, epoch marker. Removes the entry or lease marker; returns 1 if a value was
/// removed.
const DELETE_LUA: &str = r"
local g = generation(ARGV[1], ARGV[3])
local key = ARGV[1] .. '@' .. g .. ARGV[2]
local tag = redis.call('GETRANGE', key, 0, 0)
if tag == '' then return 0 end
redis.call('UNLINK', key)
if tag == 'v' then
  redis.call('ZREM', ARGV[1] .. '#idx@' .. g, ARGV[2])
  return 1
end
return 0
";

/// ARGV: base, trash set. Bumps the generation; returns the values the old one held (live count
/// from its index) and queues the old generation for the background sweep. A namespace without a
/// generation holds nothing (a read or write makes it first), and bumping it leaves no key: a
/// made-up namespace must not leave one behind for ever.
const BUMP_LUA: &str = r"
local g = redis.call('GET', ARGV[1] .. '#gen')
if not g then return 0 end
local idx = ARGV[1] .. '#idx@' .. g
local removed = redis.call('ZCOUNT', idx, string.format('%d', now_ms()), '+inf')
redis.call('INCR', ARGV[1] .. '#gen')
if redis.call('EXISTS', idx) == 1 then redis.call('SADD', ARGV[2], ARGV[1] .. '@' .. g) end
return removed
";

/// ARGV: epoch marker, namespaces set, trash set, probe: `check`, `none` (a SCAN found no
/// generation under the prefix) or `found` (it found one). Returns 0 when Redis holds something of
/// this store (the marker, one of the sets, or a generation found; the marker is written if it
/// was missing: later checks need no SCAN), 1 when it holds nothing (the database is empty, or no
/// generation was found), 2 for `check` when other keys exist (SCAN for generations, then call
/// again). Nothing is written for 1: a prefix nobody used keeps no key.
const EPOCH_LUA: &str = r"
if redis.call('EXISTS', ARGV[1]) == 1 then return 0 end
if redis.call('EXISTS', ARGV[2], ARGV[3]) > 0 or ARGV[4] == 'found' then
  local t = redis.call('TIME')
  redis.call('SET', ARGV[1], string.format('%d', tonumber(t[1]) * 1000000 + tonumber(t[2])))
  return 0
end
if ARGV[4] == 'check' and redis.call('DBSIZE') > 0 then return 2 end
return 1
";

/// KEYS: entries found by SCAN. ARGV: index key, length of the entry-name base `P{ns}@{gen}`.
/// Unlinks them; returns how many held values.
const UNLINK_MATCHED_LUA: &str = r"
local removed, members = 0, {}
local cut = tonumber(ARGV[2]) + 1
for _, k in ipairs(KEYS) do
  local tag = redis.call('GETRANGE', k, 0, 0)
  if tag ~= '' then
    redis.call('UNLINK', k)
    if tag == 'v' then
      removed = removed + 1
      members[#members + 1] = string.sub(k, cut)
    end
  end
end
if #members > 0 then redis.call('ZREM', ARGV[1], unpack(members)) end
return removed
";

/// ARGV: trash set, old generation `P{ns}@{gen}`, batch. Deletes up to `batch` of its values;
/// returns how many (fewer than `batch`: done, dropped from the trash).
const SWEEP_LUA: &str = r"
local base, g = string.match(ARGV[2], '^(.*)@(%d+)$')
if not base then redis.call('SREM', ARGV[1], ARGV[2]) return 0 end
local idx = base .. '#idx@' .. g
local members = redis.call('ZRANGE', idx, 0, tonumber(ARGV[3]) - 1)
for _, m in ipairs(members) do redis.call('UNLINK', ARGV[2] .. m) end
if #members > 0 then redis.call('ZREM', idx, unpack(members)) end
if #members < tonumber(ARGV[3]) then redis.call('SREM', ARGV[1], ARGV[2]) end
return #members
";

/// ARGV: base, batch. Drops up to `batch` expired members from the current generation's index.
const PRUNE_LUA: &str = r"
local g = redis.call('GET', ARGV[1] .. '#gen')
if not g then return 0 end
local idx = ARGV[1] .. '#idx@' .. g
local old = redis.call('ZRANGEBYSCORE', idx, '-inf', '(' .. string.format('%d', now_ms()), 'LIMIT', 0, tonumber(ARGV[2]))
if #old > 0 then redis.call('ZREM', idx, unpack(old)) end
return #old
";

/// ARGV: namespaces set, prefix. Live values under the prefix: the sum of the current generations'
/// index counts (entries with an expiry still ahead).
const KEY_COUNT_LUA: &str = r"
local total, now = 0, string.format('%d', now_ms())
for _, ns in ipairs(redis.call('SMEMBERS', ARGV[1])) do
  local g = redis.call('GET', ARGV[2] .. ns .. '#gen')
  if g then total = total + redis.call('ZCOUNT', ARGV[2] .. ns .. '#idx@' .. g, now, '+inf') end
end
return total
";

struct Scripts {
    get: Script,
    set: Script,
    delete: Script,
    bump: Script,
    unlink_matched: Script,
    sweep: Script,
    prune: Script,
    key_count: Script,
    epoch: Script,
}

impl Scripts {
    fn new() -> Self {
        let with_prelude = |body: &str| Script::new(&format!("{GENERATION_LUA}{body}"));
        Self {
            get: with_prelude(GET_LUA),
            set: with_prelude(SET_LUA),
            delete: with_prelude(DELETE_LUA),
            bump: with_prelude(BUMP_LUA),
            unlink_matched: Script::new(UNLINK_MATCHED_LUA),
            sweep: Script::new(SWEEP_LUA),
            prune: with_prelude(PRUNE_LUA),
            key_count: with_prelude(KEY_COUNT_LUA),
            epoch: Script::new(EPOCH_LUA),
        }
    }

    fn all(&self) -> [&Script; 9] {
        [
            &self.get,
            &self.set,
            &self.delete,
            &self.bump,
            &self.unlink_matched,
            &self.sweep,
            &self.prune,
            &self.key_count,
            &self.epoch,
        ]
    }
}

/// What one round trip does: the `db.operation.name` of its span and the `command` label of its
/// duration. Scripts are named after what they do; a pipeline of one script per key is one
/// command (its span says how many in `db.operation.batch.size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    /// A lookup: MGET of the generations and entries, and the lookup script (GET, or leave a
    /// lease marker (SET PX) on a miss) for the keys it did not answer.
    Get,
    /// The store script: check the lease, SET PX, ZADD to the index, SADD the namespace.
    Set,
    /// The delete script: UNLINK and ZREM.
    Delete,
    /// The namespace bump script: ZCOUNT, INCR of the generation, SADD to the trash.
    Bump,
    /// GET of a namespace's generation (before a pattern's SCAN).
    Generation,
    /// SCAN MATCH … COUNT 1000.
    Scan,
    /// The script that UNLINKs a SCAN batch and ZREMs it from the index.
    Unlink,
    /// The sweep script: deletes a batch of an old generation's values.
    Sweep,
    /// The prune script: drops expired members from an index.
    Prune,
    /// SMEMBERS of the namespaces or trash set.
    Members,
    /// INFO memory and the key-count script.
    Info,
    /// PING and SCRIPT LOAD (connecting, or after Redis lost the scripts).
    Load,
    /// The epoch script: EXISTS of the marker and the sets, DBSIZE, SET of the marker if missing.
    Epoch,
}

impl Command {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Set => "SET",
            Self::Delete => "DEL",
            Self::Bump => "BUMP",
            Self::Generation => "GET_GENERATION",
            Self::Scan => "SCAN",
            Self::Unlink => "UNLINK",
            Self::Sweep => "SWEEP",
            Self::Prune => "PRUNE",
            Self::Members => "SMEMBERS",
            Self::Info => "INFO",
            Self::Load => "SCRIPT_LOAD",
            Self::Epoch => "EPOCH",
        }
    }

    fn span_name(self) -> &'static str {
        match self {
            Self::Get => "redis GET",
            Self::Set => "redis SET",
            Self::Delete => "redis DEL",
            Self::Bump => "redis BUMP",
            Self::Generation => "redis GET_GENERATION",
            Self::Scan => "redis SCAN",
            Self::Unlink => "redis UNLINK",
            Self::Sweep => "redis SWEEP",
            Self::Prune => "redis PRUNE",
            Self::Members => "redis SMEMBERS",
            Self::Info => "redis INFO",
            Self::Load => "redis SCRIPT_LOAD",
            Self::Epoch => "redis EPOCH",
        }
    }

    /// The round trip's span, under the current span; none when nothing is current (background
    /// upkeep would otherwise start a trace every few seconds).
    fn span(self, batch: usize) -> tracing::Span {
        let parent = tracing::Span::current();
        if parent.is_none() {
            return parent;
        }
        tracing::info_span!(
            parent: &parent,
            "redis",
            otel.name = self.span_name(),
            otel.kind = "client",
            db.system.name = "redis",
            db.operation.name = self.name(),
            db.operation.batch.size = (batch > 1).then_some(batch),
            error.type = Empty,
            otel.status_code = Empty,
        )
    }
}

/// Redis's own figures for the statistics.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedisInfo {
    /// `used_memory` of the whole Redis instance (shared with anything else stored there).
    pub used_memory: u64,
    /// Live values under this store's prefix.
    pub key_count: u64,
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    pub url: String,
    pub prefix: String,
    pub lease_ttl: Duration,
    /// Bound on every Redis call, connecting included.
    pub timeout: Duration,
    /// Multiplexed connections opened (each carries any number of calls at once).
    pub pool_size: u32,
}

/// The store's connections to Redis: a few multiplexed connections, each shared by every call
/// and taken in turn. Not a pool: a call does not check a connection out, it writes its
/// commands into the connection's pipeline and waits for its own replies, so calls made at the
/// same time go out in the same writes. (A bb8 pool of them made each call hold a connection
/// for its whole round trip: at most `pool_size` calls in flight and the rest queued on the
/// pool. `cache-svc bench`'s raw client, connected that way, made a third of the GETs per second
/// it makes now.)
#[derive(Clone)]
pub struct Connections {
    connections: Arc<[MultiplexedConnection]>,
    next: Arc<AtomicUsize>,
}

impl Connections {
    /// Opens `options.pool_size` connections (at least one), each within the timeout.
    pub async fn open(client: &redis::Client, options: &RedisOptions) -> Result<Self, Error> {
        // The store bounds every call itself (`RedisStore::round_trip`): no second timer per call.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(options.timeout))
            .set_response_timeout(None);
        let mut connections = Vec::new();
        for _ in 0..options.pool_size.max(1) {
            let connection = tokio::time::timeout(
                options.timeout,
                client.get_multiplexed_async_connection_with_config(&config),
            )
            .await
            .map_err(|_| Error::Timeout)??;
            connections.push(connection);
        }
        Ok(Self {
            connections: connections.into(),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The next connection in turn (a handle: cloning one is cheap, and shares it).
    pub fn pick(&self) -> MultiplexedConnection {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        self.connections[i].clone()
    }
}

pub struct RedisStore {
    options: RedisOptions,
    client: redis::Client,
    /// Replaced by [`RedisStore::connect`]: a multiplexed connection broken by a Redis restart does
    /// not heal, so recovery starts from fresh connections. `None` until the first connect.
    connections: RwLock<Option<Connections>>,
    stats: Arc<Stats>,
    scripts: Scripts,
    namespaces_key: String,
    trash_key: String,
    epoch_key: String,
    /// The generation last seen per namespace (see [`RedisStore::get_many`]).
    generations: RwLock<HashMap<String, Arc<str>>>,
}

impl RedisStore {
    /// Checks the URL; no I/O (call [`RedisStore::connect`]).
    pub fn new(options: RedisOptions, stats: Arc<Stats>) -> Result<Self, Error> {
        let client = redis::Client::open(options.url.as_str())
            .map_err(|err| Error::RedisUrl(err.to_string()))?;
        Ok(Self {
            namespaces_key: format!("{}#namespaces", options.prefix),
            trash_key: format!("{}#trash", options.prefix),
            epoch_key: format!("{}#epoch", options.prefix),
            generations: RwLock::new(HashMap::new()),
            options,
            client,
            connections: RwLock::new(None),
            stats,
            scripts: Scripts::new(),
        })
    }

    /// Fresh connections, checked with PING and the scripts loaded; they replace the old ones on
    /// success.
    pub async fn connect(&self) -> Result<(), Error> {
        let connections = Connections::open(&self.client, &self.options).await?;
        let mut pipe = redis::pipe();
        pipe.cmd("PING");
        for script in self.scripts.all() {
            pipe.load_script(script);
        }
        self.round_trip::<redis::Value>(Command::Load, &connections, &pipe, pipe.len())
            .await?;
        match self.connections.write() {
            Ok(mut current) => *current = Some(connections),
            Err(poisoned) => *poisoned.into_inner() = Some(connections),
        }
        Ok(())
    }

    pub fn prefix(&self) -> &str {
        &self.options.prefix
    }

    /// Looks the keys up in one round trip when their namespaces' generations are known: one
    /// `MGET` of each key's `P{ns}#gen` and its entry under the generation last seen. A key whose
    /// generation still matches and whose entry exists (a value, or a lease marker: the script
    /// would return it unchanged) is answered from it. The others (a miss to lease, a namespace
    /// bumped since, a generation not seen yet) go through the lookup script in a second round
    /// trip. One command for the whole batch: Redis spends about 2.4 µs on each run of the lookup
    /// script and about 0.1 µs per key of an MGET, plus its per-command overhead once. Sound:
    /// MGET reads every key at one instant, no write ever stores under a generation other than
    /// the current one, and generations never repeat, so a matching generation means the entry
    /// is the current one.
    pub async fn get_many(&self, keys: &[Key]) -> Result<Vec<Lookup>, Error> {
        let mut found: Vec<Option<Lookup>> = keys.iter().map(|_| None).collect();
        let seen: Vec<Option<Arc<str>>> = {
            let generations = read(&self.generations);
            keys.iter()
                .map(|key| generations.get(key.namespace()).cloned())
                .collect()
        };
        if seen.iter().any(Option::is_some) {
            let mut mget = redis::cmd("MGET");
            for (key, generation) in keys.iter().zip(&seen) {
                if let Some(generation) = generation {
                    let base = self.base(key.namespace());
                    mget.arg(format!("{base}#gen"))
                        .arg(format!("{base}@{generation}{}", key.rest()));
                }
            }
            let mut pipe = redis::pipe();
            pipe.add_command(mget);
            let keyed = seen.iter().filter(|g| g.is_some()).count();
            let (replies,): (Vec<Option<Vec<u8>>>,) =
                self.query_batch(Command::Get, &pipe, keyed).await?;
            let mut replies = replies.into_iter();
            for ((key, generation), slot) in keys.iter().zip(&seen).zip(&mut found) {
                let Some(generation) = generation else {
                    continue;
                };
                let (current, entry) = (replies.next().flatten(), replies.next().flatten());
                match (current, entry) {
                    (Some(current), Some(entry)) if current == generation.as_bytes() => {
                        *slot = Some(decode_entry(entry)?);
                    }
                    (Some(current), _) if current != generation.as_bytes() => {
                        self.saw_generation(key.namespace(), &current);
                    }
                    _ => {}
                }
            }
        }
        let rest: Vec<usize> = (0..keys.len()).filter(|&i| found[i].is_none()).collect();
        if !rest.is_empty() {
            let lease_ms = millis(self.options.lease_ttl);
            let mut pipe = redis::pipe();
            for &i in &rest {
                let key = &keys[i];
                let mut call = self.scripts.get.prepare_invoke();
                call.arg(self.base(key.namespace()))
                    .arg(key.rest())
                    .arg(new_lease())
                    .arg(lease_ms)
                    .arg(&self.epoch_key);
                pipe.invoke_script(&call);
            }
            let replies: Vec<(Vec<u8>, Vec<u8>)> = self.query(Command::Get, &pipe).await?;
            for (i, (entry, generation)) in rest.into_iter().zip(replies) {
                self.saw_generation(keys[i].namespace(), &generation);
                found[i] = Some(decode_entry(entry)?);
            }
        }
        found
            .into_iter()
            .map(|lookup| lookup.ok_or_else(|| Error::Unexpected("no reply for a key".into())))
            .collect()
    }

    /// Remembers `namespace`'s current generation for the next lookups (for at most
    /// [`MAX_GENERATIONS_SEEN`] namespaces: callers name namespaces, so the map is bounded).
    fn saw_generation(&self, namespace: &str, generation: &[u8]) {
        let Ok(generation) = std::str::from_utf8(generation) else {
            return;
        };
        // Most misses see the generation already known: no write lock for them.
        if read(&self.generations)
            .get(namespace)
            .is_some_and(|seen| &**seen == generation)
        {
            return;
        }
        let mut generations = match self.generations.write() {
            Ok(generations) => generations,
            Err(poisoned) => poisoned.into_inner(),
        };
        if generations.len() >= MAX_GENERATIONS_SEEN && !generations.contains_key(namespace) {
            return;
        }
        generations.insert(namespace.to_owned(), generation.into());
    }

    pub async fn set_many(&self, entries: &[SetEntry]) -> Result<Vec<bool>, Error> {
        let mut pipe = redis::pipe();
        for entry in entries {
            let mut tagged = Vec::with_capacity(entry.value.len() + 1);
            tagged.push(TAG_VALUE);
            tagged.extend_from_slice(&entry.value);
            let mut call = self.scripts.set.prepare_invoke();
            call.arg(self.base(entry.key.namespace()))
                .arg(entry.key.rest())
                .arg(tagged)
                .arg(millis(entry.ttl).max(1))
                .arg(entry.lease)
                .arg(&self.namespaces_key)
                .arg(entry.key.namespace())
                .arg(&self.epoch_key);
            pipe.invoke_script(&call);
        }
        let stored: Vec<i64> = self.query(Command::Set, &pipe).await?;
        Ok(stored.into_iter().map(|s| s == 1).collect())
    }

    /// Per key: whether it held a value.
    pub async fn delete(&self, keys: &[Key]) -> Result<Vec<bool>, Error> {
        let mut pipe = redis::pipe();
        for key in keys {
            let mut call = self.scripts.delete.prepare_invoke();
            call.arg(self.base(key.namespace()))
                .arg(key.rest())
                .arg(&self.epoch_key);
            pipe.invoke_script(&call);
        }
        let deleted: Vec<i64> = self.query(Command::Delete, &pipe).await?;
        Ok(deleted.into_iter().map(|d| d == 1).collect())
    }

    /// Returns the number of values removed.
    pub async fn invalidate(&self, pattern: &Pattern) -> Result<u64, Error> {
        match pattern {
            Pattern::Namespace(namespace) => self.bump(&[namespace.as_str()]).await,
            Pattern::Match { namespace, glob } => self.unlink_matching(namespace, glob).await,
        }
    }

    /// Bumps the namespaces' generations; returns the values they held.
    pub async fn bump(&self, namespaces: &[&str]) -> Result<u64, Error> {
        if namespaces.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for namespace in namespaces {
            let mut call = self.scripts.bump.prepare_invoke();
            call.arg(self.base(namespace)).arg(&self.trash_key);
            pipe.invoke_script(&call);
        }
        let removed: Vec<u64> = self.query(Command::Bump, &pipe).await?;
        Ok(removed.iter().sum())
    }

    /// SCAN MATCH over the namespace's current generation, then UNLINK each batch found.
    async fn unlink_matching(&self, namespace: &str, glob: &str) -> Result<u64, Error> {
        let base = self.base(namespace);
        let generation: Option<String> = self
            .query_cmd(
                Command::Generation,
                redis::cmd("GET").arg(format!("{base}#gen")),
            )
            .await?;
        // No generation: nothing reachable in this namespace.
        let Some(generation) = generation else {
            return Ok(0);
        };
        let entry_base = format!("{base}@{generation}");
        let index = format!("{base}#idx@{generation}");
        let matcher = format!("{}{glob}", escape_glob(&entry_base));
        let mut removed = 0;
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = self
                .query_cmd(
                    Command::Scan,
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&matcher)
                        .arg("COUNT")
                        .arg(BATCH),
                )
                .await?;
            if !keys.is_empty() {
                let mut call = self.scripts.unlink_matched.prepare_invoke();
                for key in &keys {
                    call.key(key.as_slice());
                }
                call.arg(&index).arg(entry_base.len());
                let mut pipe = redis::pipe();
                pipe.invoke_script(&call);
                let (batch,): (u64,) = self.query(Command::Unlink, &pipe).await?;
                removed += batch;
            }
            cursor = next;
            if cursor == 0 {
                return Ok(removed);
            }
        }
    }

    /// Every entry becomes unreachable at once (every namespace's generation is bumped), then the
    /// old generations are deleted before returning. Namespaces are found in `P#namespaces` and,
    /// in case that set was lost, by SCAN for generation keys. Generations are kept.
    pub async fn clear(&self) -> Result<(), Error> {
        let mut namespaces: std::collections::BTreeSet<String> = self
            .query_cmd::<Vec<String>>(
                Command::Members,
                redis::cmd("SMEMBERS").arg(&self.namespaces_key),
            )
            .await?
            .into_iter()
            .collect();
        namespaces.extend(self.generations(false).await?);
        let namespaces: Vec<&str> = namespaces.iter().map(String::as_str).collect();
        for chunk in namespaces.chunks(BATCH) {
            self.bump(chunk).await?;
        }
        self.sweep_trash().await?;
        Ok(())
    }

    /// Whether Redis holds nothing of this store: the epoch marker is missing and no namespace
    /// generation exists either (which covers a marker lost to `allkeys-*` eviction, or never
    /// written by an older cache-svc). Then no entry in it can be stale, and an outage journal
    /// needs no replay. When Redis does hold something, the marker is left for the next check.
    ///
    /// One round trip when the marker is there or the database is empty; a SCAN for generation
    /// keys only when the marker is missing from a database holding other keys.
    pub async fn check_empty(&self) -> Result<bool, Error> {
        match self.epoch("check").await? {
            2 => {
                let found = !self.generations(true).await?.is_empty();
                Ok(self.epoch(if found { "found" } else { "none" }).await? == 1)
            }
            empty => Ok(empty == 1),
        }
    }

    async fn epoch(&self, probe: &str) -> Result<u8, Error> {
        let mut call = self.scripts.epoch.prepare_invoke();
        call.arg(&self.epoch_key)
            .arg(&self.namespaces_key)
            .arg(&self.trash_key)
            .arg(probe);
        let mut pipe = redis::pipe();
        pipe.invoke_script(&call);
        let (answer,): (u8,) = self.query(Command::Epoch, &pipe).await?;
        Ok(answer)
    }

    /// Namespaces with a generation key, found by SCAN; with `first_only`, stops at the first.
    async fn generations(&self, first_only: bool) -> Result<Vec<String>, Error> {
        let matcher = format!("{}*#gen", escape_glob(&self.options.prefix));
        let mut namespaces = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .query_cmd(
                    Command::Scan,
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&matcher)
                        .arg("COUNT")
                        .arg(BATCH),
                )
                .await?;
            for key in keys {
                if let Some(namespace) = key
                    .strip_prefix(&self.options.prefix)
                    .and_then(|rest| rest.strip_suffix("#gen"))
                    .filter(|ns| !ns.is_empty() && !ns.contains([':', '@', '#']))
                {
                    namespaces.push(namespace.to_owned());
                }
            }
            cursor = next;
            if cursor == 0 || (first_only && !namespaces.is_empty()) {
                return Ok(namespaces);
            }
        }
    }

    /// Background upkeep: deletes the values of bumped generations and drops expired members from
    /// the current indexes, in batches. Returns the index members removed.
    pub async fn sweep(&self) -> Result<u64, Error> {
        let mut swept = self.sweep_trash().await?;
        let namespaces: Vec<String> = self
            .query_cmd(
                Command::Members,
                redis::cmd("SMEMBERS").arg(&self.namespaces_key),
            )
            .await?;
        for namespace in namespaces {
            loop {
                let mut call = self.scripts.prune.prepare_invoke();
                call.arg(self.base(&namespace)).arg(BATCH);
                let mut pipe = redis::pipe();
                pipe.invoke_script(&call);
                let (pruned,): (u64,) = self.query(Command::Prune, &pipe).await?;
                swept += pruned;
                if pruned < BATCH as u64 {
                    break;
                }
            }
        }
        Ok(swept)
    }

    async fn sweep_trash(&self) -> Result<u64, Error> {
        let old: Vec<String> = self
            .query_cmd(
                Command::Members,
                redis::cmd("SMEMBERS").arg(&self.trash_key),
            )
            .await?;
        let mut swept = 0;
        for generation in old {
            loop {
                let mut call = self.scripts.sweep.prepare_invoke();
                call.arg(&self.trash_key).arg(&generation).arg(BATCH);
                let mut pipe = redis::pipe();
                pipe.invoke_script(&call);
                let (deleted,): (u64,) = self.query(Command::Sweep, &pipe).await?;
                swept += deleted;
                if deleted < BATCH as u64 {
                    break;
                }
            }
        }
        Ok(swept)
    }

    pub async fn info(&self) -> Result<RedisInfo, Error> {
        let mut call = self.scripts.key_count.prepare_invoke();
        call.arg(&self.namespaces_key).arg(&self.options.prefix);
        let mut pipe = redis::pipe();
        pipe.cmd("INFO").arg("memory").invoke_script(&call);
        let (info, key_count): (String, u64) = self.query(Command::Info, &pipe).await?;
        let used_memory = info
            .lines()
            .find_map(|line| line.strip_prefix("used_memory:"))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0);
        Ok(RedisInfo {
            used_memory,
            key_count,
        })
    }

    fn base(&self, namespace: &str) -> String {
        format!("{}{namespace}", self.options.prefix)
    }

    fn connections(&self) -> Result<Connections, Error> {
        let current = match self.connections.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        current.ok_or(Error::NotConnected)
    }

    async fn query_cmd<T: FromRedisValue>(
        &self,
        command: Command,
        cmd: &redis::Cmd,
    ) -> Result<T, Error> {
        let mut pipe = redis::pipe();
        pipe.add_command(cmd.clone());
        let (value,): (T,) = self.query(command, &pipe).await?;
        Ok(value)
    }

    /// Runs a pipeline; if Redis lost the scripts (restart, SCRIPT FLUSH) loads them and retries
    /// once. Pipelines are homogeneous, so a NOSCRIPT means none of its scripts ran.
    async fn query<T: FromRedisValue>(
        &self,
        command: Command,
        pipe: &Pipeline,
    ) -> Result<T, Error> {
        self.query_batch(command, pipe, pipe.len()).await
    }

    /// [`RedisStore::query`] of a pipeline made for `batch` keys.
    async fn query_batch<T: FromRedisValue>(
        &self,
        command: Command,
        pipe: &Pipeline,
        batch: usize,
    ) -> Result<T, Error> {
        let connections = self.connections()?;
        match self.round_trip(command, &connections, pipe, batch).await {
            Err(Error::Redis(err))
                if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) =>
            {
                let mut load = redis::pipe();
                for script in self.scripts.all() {
                    load.load_script(script);
                }
                self.round_trip::<redis::Value>(Command::Load, &connections, &load, load.len())
                    .await?;
                self.round_trip(command, &connections, pipe, batch).await
            }
            other => other,
        }
    }

    /// One pipeline on the next of `connections`, bounded by the timeout, timed for the
    /// statistics and the `learnhub_cache_redis_duration_seconds` metric, inside its span.
    async fn round_trip<T: FromRedisValue>(
        &self,
        command: Command,
        connections: &Connections,
        pipe: &Pipeline,
        batch: usize,
    ) -> Result<T, Error> {
        let span = command.span(batch);
        let started = Instant::now();
        let mut connection = connections.pick();
        let result = tokio::time::timeout(self.options.timeout, async {
            Ok::<T, Error>(pipe.query_async(&mut connection).await?)
        })
        .instrument(span.clone())
        .await;
        let elapsed = started.elapsed();
        self.stats.record_redis_latency(elapsed);
        metrics::histogram!("learnhub_cache_redis_duration_seconds", "command" => command.name())
            .record(elapsed.as_secs_f64());
        let result = result.map_err(|_| Error::Timeout).and_then(|result| result);
        if let Err(err) = &result {
            span.record("otel.status_code", "ERROR");
            span.record(
                "error.type",
                match err {
                    Error::Timeout => "timeout",
                    Error::Redis(err)
                        if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) =>
                    {
                        "noscript"
                    }
                    _ => "redis_error",
                },
            );
        }
        result
    }
}

fn decode_entry(reply: Vec<u8>) -> Result<Lookup, Error> {
    match reply.split_first() {
        Some((&TAG_VALUE, value)) => Ok(Lookup::Hit(value.to_vec())),
        Some((&TAG_LEASE, token)) => std::str::from_utf8(token)
            .ok()
            .and_then(|t| t.parse().ok())
            .map(|lease| Lookup::Miss { lease })
            .ok_or_else(|| Error::Unexpected("malformed lease marker".into())),
        _ => Err(Error::Unexpected("entry with an unknown tag".into())),
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
