//! The transactional outbox of cache invalidations (docs/cache-outbox.md).
//!
//! A write that makes cached reads stale records what it makes stale in `cache_outbox`, in its
//! own transaction; after the commit the invalidation is sent and, once cache-svc acknowledges
//! it, the row is deleted. A relay drains what is left (cache-svc away, or the process died
//! between commit and delivery) at start-up and every second, so a lost invalidation outlives
//! the restart of any one process. Delivery is at least once: invalidations are idempotent.
//!
//! Each service that caches keeps the table in its own database (its migrations create
//! `cache_outbox`, the same in every service) and one [`Outbox`] around its cache client.
use std::{sync::Arc, time::Duration};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use learnhub_cache_client::{CacheClient, CacheError, CacheKey, CachePattern};
use learnhub_kit::{shutdown::CancellationToken, time};
use tokio::sync::Notify;

use crate::{Db, DbConn, DbError, db_run};

/// How often the relay looks for undelivered rows.
const RELAY_EVERY: Duration = Duration::from_secs(1);
/// Rows delivered per relay round (one Delete call, one InvalidatePattern per distinct pattern).
const BATCH: i64 = 100;

/// Rows not yet delivered, as last seen by the relay (`service` label).
pub const PENDING: &str = "learnhub_cache_outbox_pending";
/// Rows delivered and deleted, inline after the write or by the relay (`service` label).
pub const DELIVERED: &str = "learnhub_cache_outbox_delivered_total";

/// What committed writes made stale: patterns to invalidate and exact keys to delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invalidation {
    pub patterns: Vec<CachePattern>,
    pub keys: Vec<CacheKey>,
}

impl Invalidation {
    /// The row's two columns: patterns and keys, one per line (`None` when there are none). A
    /// key or pattern holding a line break (escaping leaves them) widens to its namespace.
    fn columns(&self) -> (Option<String>, Option<String>) {
        let (mut patterns, mut keys) = (Vec::new(), Vec::new());
        let texts = self.patterns.iter().map(|p| (p.as_str(), true));
        for (text, is_pattern) in texts.chain(self.keys.iter().map(|k| (k.as_str(), false))) {
            if text.contains('\n') {
                patterns.push(namespace_of(text).as_str().to_owned());
            } else if is_pattern {
                patterns.push(text.to_owned());
            } else {
                keys.push(text.to_owned());
            }
        }
        let join = |lines: Vec<String>| (!lines.is_empty()).then(|| lines.join("\n"));
        (join(patterns), join(keys))
    }

    /// The invalidations of `rows`, merged (each pattern and key once).
    fn of_rows(rows: &[OutboxRow]) -> Self {
        let mut merged = Self::default();
        for row in rows {
            let lines = |column: &Option<String>| {
                column
                    .as_deref()
                    .unwrap_or_default()
                    .lines()
                    .filter(|line| !line.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            };
            for text in lines(&row.pattern) {
                merged.add_pattern(parse_pattern(&text).unwrap_or_else(|| {
                    tracing::warn!(
                        pattern = text,
                        "unreadable outbox pattern; its namespace goes"
                    );
                    namespace_of(&text)
                }));
            }
            for text in lines(&row.keys) {
                match parse_key(&text) {
                    Some(key) if !merged.keys.contains(&key) => merged.keys.push(key),
                    Some(_) => {}
                    None => {
                        tracing::warn!(key = text, "unreadable outbox key; its namespace goes");
                        merged.add_pattern(namespace_of(&text));
                    }
                }
            }
        }
        merged
    }

    fn add_pattern(&mut self, pattern: CachePattern) {
        if !self.patterns.contains(&pattern) {
            self.patterns.push(pattern);
        }
    }

    /// Sends every part at once; `Ok` when cache-svc acknowledged them all.
    async fn send(&self, client: &CacheClient) -> Result<(), CacheError> {
        let patterns =
            futures::future::try_join_all(self.patterns.iter().map(|p| client.invalidate(p)));
        let keys = async {
            if self.keys.is_empty() {
                Ok(0)
            } else {
                client.delete(&self.keys).await
            }
        };
        tokio::try_join!(patterns, keys).map(drop)
    }
}

/// `text` read back into the key it was written from (segments unescaped, then escaped again
/// by `CacheKey`); `None` unless that gives back exactly `text`.
fn parse_key(text: &str) -> Option<CacheKey> {
    let mut segments = text.split(':');
    let mut key = CacheKey::new(&unescape(segments.next()?)?);
    for segment in segments {
        key = key.push_str(&unescape(segment)?);
    }
    (key.as_str() == text).then_some(key)
}

/// `ns:*` or `ns:a:b:*` read back (patterns are only ever a key's children).
fn parse_pattern(text: &str) -> Option<CachePattern> {
    let pattern = parse_key(text.strip_suffix(":*")?)?.children();
    (pattern.as_str() == text).then_some(pattern)
}

/// The whole namespace `text` lies in: what an unreadable row widens to.
fn namespace_of(text: &str) -> CachePattern {
    let first = text.split(':').next().unwrap_or_default();
    let first = first.split('\n').next().unwrap_or_default();
    CachePattern::namespace(&unescape(first).unwrap_or_else(|| first.to_owned()))
}

/// Undoes `CacheKey`'s percent-escaping of one segment; `None` for an escape it never writes.
fn unescape(segment: &str) -> Option<String> {
    let mut out = String::with_capacity(segment.len());
    let mut rest = segment;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let c = match rest.get(at + 1..at + 3)? {
            "2A" => '*',
            "3F" => '?',
            "5B" => '[',
            "5D" => ']',
            "5C" => '\\',
            "3A" => ':',
            "25" => '%',
            _ => return None,
        };
        out.push(c);
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

diesel::table! {
    /// Every caching service's `cache_outbox` (its migrations create it).
    cache_outbox (id) {
        id -> BigInt,
        pattern -> Nullable<Text>,
        keys -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

/// One recorded invalidation: patterns and exact keys, each list one item per line.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = cache_outbox)]
struct OutboxRow {
    id: i64,
    pattern: Option<String>,
    keys: Option<String>,
}

#[derive(Insertable)]
#[diesel(table_name = cache_outbox)]
struct NewOutboxRow<'a> {
    pattern: Option<&'a str>,
    keys: Option<&'a str>,
    created_at: NaiveDateTime,
}

impl OutboxRow {
    /// Records one invalidation (one statement); its id, to delete it once delivered.
    async fn insert(
        conn: &mut DbConn,
        pattern: Option<&str>,
        keys: Option<&str>,
        now: NaiveDateTime,
    ) -> QueryResult<i64> {
        let new = NewOutboxRow {
            pattern,
            keys,
            created_at: now,
        };
        db_run!(conn => diesel::insert_into(cache_outbox::table)
            .values(&new)
            .returning(cache_outbox::id)
            .get_result(conn)
            .await)
    }

    /// The `limit` oldest rows, in id order.
    async fn oldest(conn: &mut DbConn, limit: i64) -> QueryResult<Vec<Self>> {
        db_run!(conn => cache_outbox::table
            .order(cache_outbox::id.asc())
            .limit(limit)
            .select(Self::as_select())
            .load(conn)
            .await)
    }

    /// Deletes delivered rows in one statement; how many were still there.
    async fn delete(conn: &mut DbConn, ids: &[i64]) -> QueryResult<usize> {
        if ids.is_empty() {
            return Ok(0);
        }
        db_run!(conn => diesel::delete(cache_outbox::table.filter(cache_outbox::id.eq_any(ids)))
            .execute(conn)
            .await)
    }

    /// Rows waiting for delivery.
    async fn count(conn: &mut DbConn) -> QueryResult<i64> {
        db_run!(conn => cache_outbox::table.count().get_result(conn).await)
    }
}

/// The cache client with the outbox that keeps its invalidations until acknowledged.
#[derive(Clone)]
pub struct Outbox {
    client: CacheClient,
    service: &'static str,
    /// Wakes the relay after a write whose invalidation could not be delivered inline.
    nudge: Arc<Notify>,
}

impl Outbox {
    pub fn new(client: CacheClient, service: &'static str) -> Self {
        // The series exist from the start: a dashboard can tell "none pending" from "no relay".
        metrics::gauge!(PENDING, "service" => service).set(0.0);
        metrics::counter!(DELIVERED, "service" => service).increment(0);
        Self {
            client,
            service,
            nudge: Arc::new(Notify::new()),
        }
    }

    pub fn client(&self) -> &CacheClient {
        &self.client
    }

    /// Runs `write` and records what it made stale (`stale`, given the write's result, may read
    /// inside the transaction) in one transaction; after the commit, delivers it. `None` from
    /// `stale`: nothing changed, no row.
    pub async fn write<T, E>(
        &self,
        db: &Db,
        write: impl AsyncFnOnce(&mut DbConn) -> Result<T, E>,
        stale: impl AsyncFnOnce(&mut DbConn, &T) -> Result<Option<Invalidation>, E>,
    ) -> Result<T, E>
    where
        E: From<diesel::result::Error> + From<DbError>,
    {
        let mut conn = db.conn().await?;
        let (value, recorded) = conn
            .transaction(async |conn| {
                let value = write(conn).await?;
                let Some(invalidation) = stale(conn, &value).await? else {
                    return Ok((value, None));
                };
                let (patterns, keys) = invalidation.columns();
                let id = OutboxRow::insert(conn, patterns.as_deref(), keys.as_deref(), time::now())
                    .await?;
                Ok::<_, E>((value, Some((id, invalidation))))
            })
            .await?;
        // No connection is held across the cache call.
        drop(conn);
        if let Some((id, invalidation)) = recorded {
            self.deliver(db, id, &invalidation).await;
        }
        Ok(value)
    }

    /// Sends a committed invalidation and deletes its row on acknowledgement; on failure the row
    /// stays for the relay, which is nudged.
    async fn deliver(&self, db: &Db, id: i64, invalidation: &Invalidation) {
        if let Err(err) = invalidation.send(&self.client).await {
            tracing::warn!(%err, outbox_id = id, "cache invalidation left to the outbox relay");
            self.nudge.notify_one();
            return;
        }
        let deleted = match db.conn().await {
            Ok(mut conn) => OutboxRow::delete(&mut conn, &[id])
                .await
                .map_err(|err| err.to_string()),
            Err(err) => Err(err.to_string()),
        };
        match deleted {
            Ok(_) => metrics::counter!(DELIVERED, "service" => self.service).increment(1),
            Err(err) => {
                // Delivered but still recorded: the relay delivers it again (harmless) and
                // deletes it.
                tracing::warn!(%err, outbox_id = id, "delivered outbox row not deleted");
                self.nudge.notify_one();
            }
        }
    }

    /// The relay, on `db` (a pool of its own, so its statements stay out of the RPCs'
    /// profile): drains the outbox now, then every second and whenever nudged, until `shutdown`.
    pub fn spawn_relay(&self, db: Db, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let outbox = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = outbox.drain(&db) => {}
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = outbox.nudge.notified() => {}
                    () = tokio::time::sleep(RELAY_EVERY) => {}
                }
            }
        })
    }

    /// Delivers the oldest rows batch by batch until none is left or a delivery fails.
    async fn drain(&self, db: &Db) {
        // The client is still retrying earlier invalidations in memory (and bypassing the cache
        // meanwhile): cache-svc is away, and sending more would only queue duplicates there.
        if self.client.pending_invalidations() > 0 {
            if let Ok(mut conn) = db.conn().await
                && let Ok(pending) = OutboxRow::count(&mut conn).await
            {
                metrics::gauge!(PENDING, "service" => self.service).set(pending as f64);
            }
            return;
        }
        loop {
            match self.relay_batch(db).await {
                Ok(Relayed::All) => {
                    metrics::gauge!(PENDING, "service" => self.service).set(0.0);
                    return;
                }
                Ok(Relayed::Batch) => {}
                Err(pending) => {
                    if let Some(pending) = pending {
                        metrics::gauge!(PENDING, "service" => self.service).set(pending as f64);
                    }
                    return;
                }
            }
        }
    }

    /// One batch: read, send, delete. `Err` carries the rows left undelivered, when known.
    async fn relay_batch(&self, db: &Db) -> Result<Relayed, Option<i64>> {
        let mut conn = db.conn().await.map_err(|err| {
            tracing::warn!(%err, "outbox relay: no connection");
            None
        })?;
        let rows = OutboxRow::oldest(&mut conn, BATCH).await.map_err(|err| {
            tracing::warn!(%err, "outbox relay: rows not read");
            None
        })?;
        if rows.is_empty() {
            return Ok(Relayed::All);
        }
        let invalidation = Invalidation::of_rows(&rows);
        match invalidation.send(&self.client).await {
            Ok(()) => {}
            Err(err) if err.is_outage() => {
                tracing::debug!(%err, rows = rows.len(), "outbox relay: cache-svc unavailable");
                let pending = if (rows.len() as i64) < BATCH {
                    Ok(rows.len() as i64)
                } else {
                    OutboxRow::count(&mut conn).await
                };
                return Err(pending.ok());
            }
            // Refused, it would be refused again: like a refused inline invalidation (which the
            // client does not retry either), it is dropped.
            Err(err) => tracing::error!(%err, "outbox relay: cache-svc refused invalidations"),
        }
        let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();
        OutboxRow::delete(&mut conn, &ids).await.map_err(|err| {
            tracing::warn!(%err, "outbox relay: delivered rows not deleted");
            None
        })?;
        metrics::counter!(DELIVERED, "service" => self.service).increment(ids.len() as u64);
        tracing::info!(
            rows = ids.len(),
            "outbox relay delivered cache invalidations"
        );
        Ok(if (rows.len() as i64) < BATCH {
            Relayed::All
        } else {
            Relayed::Batch
        })
    }
}

/// Runs `write` on a connection of `db`. With an outbox (the service has a cache), in one
/// transaction with the row of what `stale` says it changed, delivered after the commit
/// ([`Outbox::write`]); without one, as it is (no transaction of its own, no row: nothing would
/// ever deliver it).
pub async fn write<T, E>(
    outbox: Option<&Outbox>,
    db: &Db,
    write: impl AsyncFnOnce(&mut DbConn) -> Result<T, E>,
    stale: impl AsyncFnOnce(&mut DbConn, &T) -> Result<Option<Invalidation>, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error> + From<DbError>,
{
    match outbox {
        Some(outbox) => outbox.write(db, write, stale).await,
        None => write(&mut db.conn().await?).await,
    }
}

/// Rows not yet delivered (one statement; for tests and operators).
pub async fn backlog(db: &Db) -> Result<i64, DbError> {
    let mut conn = db.conn().await?;
    OutboxRow::count(&mut conn).await.map_err(DbError::from)
}

/// How far a relay round got.
enum Relayed {
    /// The outbox was emptied.
    All,
    /// A full batch went; there may be more.
    Batch,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_back_into_the_invalidations_they_record() {
        let invalidation = Invalidation {
            patterns: vec![
                CachePattern::namespace("catalog"),
                CacheKey::new("user").push(7).children(),
            ],
            keys: vec![
                CacheKey::new("course").push(3),
                CacheKey::new("course")
                    .push("slug")
                    .push_str("odd*:%[slug]?\\"),
            ],
        };
        let (pattern, keys) = invalidation.columns();
        let row = OutboxRow {
            id: 1,
            pattern,
            keys,
        };
        assert_eq!(Invalidation::of_rows(&[row.clone(), row]), invalidation);
    }

    #[test]
    fn unreadable_rows_widen_to_their_namespace() {
        let row = OutboxRow {
            id: 1,
            pattern: Some("user:%ZZ:*".into()),
            keys: Some("course:%41".into()),
        };
        let read = Invalidation::of_rows(&[row]);
        assert_eq!(
            read.patterns,
            vec![
                CachePattern::namespace("user"),
                CachePattern::namespace("course")
            ]
        );
        assert!(read.keys.is_empty());
    }

    #[test]
    fn a_key_with_a_line_break_widens_to_its_namespace() {
        let invalidation = Invalidation {
            patterns: Vec::new(),
            keys: vec![CacheKey::new("course").push("slug").push_str("a\nb")],
        };
        assert_eq!(invalidation.columns(), (Some("course:*".to_owned()), None));
    }
}
