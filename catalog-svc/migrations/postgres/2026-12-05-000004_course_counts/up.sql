-- Published courses per (category, course type), kept exact by the database in the transaction of
-- every write to `courses` (see docs/census.md): the census reads these few rows instead of
-- aggregating every published course. A key that no longer has published courses keeps its row
-- at 0, so a busy key is never deleted and inserted again.
CREATE TABLE course_counts (
    category_id BIGINT NOT NULL, -- no foreign key: derived from courses.category_id, which has one
    course_type TEXT NOT NULL,
    -- No CHECK (published >= 0): Postgres checks the row an upsert proposes, and a decrement
    -- proposes a negative one before it finds the row it updates.
    published BIGINT NOT NULL,
    PRIMARY KEY (category_id, course_type)
);

-- Adds the net change of one statement, one row per key that changed, in key order: two
-- transactions that change the same keys lock them in the same order, so they queue and never
-- deadlock; `published + EXCLUDED.published` adds to the committed value the lock waited for.
CREATE FUNCTION course_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO course_counts (category_id, course_type, published)
        SELECT category_id, course_type, COUNT(*) FROM new_rows
        WHERE status = 'published'
        GROUP BY category_id, course_type
        ORDER BY category_id, course_type
        ON CONFLICT (category_id, course_type)
        DO UPDATE SET published = course_counts.published + EXCLUDED.published;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO course_counts (category_id, course_type, published)
        SELECT category_id, course_type, -COUNT(*) FROM old_rows
        WHERE status = 'published'
        GROUP BY category_id, course_type
        ORDER BY category_id, course_type
        ON CONFLICT (category_id, course_type)
        DO UPDATE SET published = course_counts.published + EXCLUDED.published;
    ELSIF TG_OP = 'TRUNCATE' THEN
        UPDATE course_counts SET published = 0;
    ELSE
        INSERT INTO course_counts (category_id, course_type, published)
        SELECT category_id, course_type, SUM(delta) FROM (
            SELECT category_id, course_type, 1 AS delta FROM new_rows WHERE status = 'published'
            UNION ALL
            SELECT category_id, course_type, -1 FROM old_rows WHERE status = 'published'
        ) AS changes
        GROUP BY category_id, course_type
        HAVING SUM(delta) <> 0
        ORDER BY category_id, course_type
        ON CONFLICT (category_id, course_type)
        DO UPDATE SET published = course_counts.published + EXCLUDED.published;
    END IF;
    RETURN NULL;
END
$$;

-- Statement triggers with transition tables: a seed's 1,000-row INSERT is one upsert of a few
-- keys, not 1,000. (Postgres allows no column list on an UPDATE trigger with transition tables;
-- an update that moves no published course nets to nothing and locks no row.)
CREATE TRIGGER course_counts_insert AFTER INSERT ON courses
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION course_counts_apply();
CREATE TRIGGER course_counts_update AFTER UPDATE ON courses
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION course_counts_apply();
CREATE TRIGGER course_counts_delete AFTER DELETE ON courses
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION course_counts_apply();
-- TRUNCATE fires no DELETE trigger.
CREATE TRIGGER course_counts_truncate AFTER TRUNCATE ON courses
    FOR EACH STATEMENT EXECUTE FUNCTION course_counts_apply();

-- The backfill runs after the triggers exist: CREATE TRIGGER has locked `courses` against writes
-- until this migration commits, so no write falls between the count and the triggers.
INSERT INTO course_counts (category_id, course_type, published)
SELECT category_id, course_type, COUNT(*) FROM courses
WHERE status = 'published'
GROUP BY category_id, course_type;
