-- Cache invalidations recorded in the transaction of the write they follow, deleted once
-- cache-svc acknowledges them (see docs/cache-outbox.md). The relay reads the oldest by id, so
-- the primary key is the only index it needs.
CREATE TABLE cache_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pattern TEXT NULL, -- a pattern to invalidate (`catalog:*`, `user:7:*`), or NULL
    keys TEXT NULL, -- exact keys to delete, one per line, or NULL
    created_at TIMESTAMP NOT NULL
);
