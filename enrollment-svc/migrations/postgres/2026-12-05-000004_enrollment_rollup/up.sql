-- EnrollmentStats' daily rollup (see docs/enrollment-rollup.md), kept exact by triggers on every
-- write, whoever writes (the service, the seeds, a test's model insert with a backdated time):
--   enrollment_days      per UTC day: enrollments, completions, and a version bumped whenever
--                        that day's learner set may have changed;
--   learner_days         per (UTC day, learner): activity events that day (enrolled, completed
--                        a course, completed a lesson, submitted); the exact learner sets;
--   learner_day_bitmaps  written by the service, not by triggers: one day's learner set as a
--                        serialized roaring bitmap, valid while its version is the day's version.
-- Triggers are per statement with transition tables, so a bulk insert aggregates once, and they
-- upsert in (day, user_id) and day order, so concurrent bulk writers lock rows in one order.

-- No write may slip between the backfill and the triggers.
LOCK TABLE enrollments, lesson_progress, exercise_submissions IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE enrollment_days (
    day DATE PRIMARY KEY,
    enrollments BIGINT NOT NULL,
    completions BIGINT NOT NULL,
    learners_version BIGINT NOT NULL
);

CREATE TABLE learner_days (
    day DATE NOT NULL,
    user_id BIGINT NOT NULL,
    events BIGINT NOT NULL, -- > 0 once a statement's changes are applied
    PRIMARY KEY (day, user_id)
);

CREATE TABLE learner_day_bitmaps (
    day DATE PRIMARY KEY,
    version BIGINT NOT NULL,
    learners BYTEA NOT NULL
);
-- Dense bitmaps barely compress; stored uncompressed they are read without decompression.
ALTER TABLE learner_day_bitmaps ALTER COLUMN learners SET STORAGE EXTERNAL;

-- One change to the rollup: a learner's activity on a day (delta +1/-1), and what it adds to the
-- day's enrollment and completion counts.
CREATE TYPE rollup_event AS (day DATE, user_id BIGINT, delta BIGINT, enrolled BIGINT, completed BIGINT);

CREATE FUNCTION rollup_apply(events rollup_event[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO learner_days (day, user_id, events)
    SELECT day, user_id, SUM(delta) FROM unnest(events)
    WHERE day IS NOT NULL AND user_id IS NOT NULL
    GROUP BY day, user_id HAVING SUM(delta) <> 0
    ORDER BY day, user_id
    ON CONFLICT (day, user_id) DO UPDATE SET events = learner_days.events + excluded.events;
    -- A pair whose last event went is no longer in the day's set.
    DELETE FROM learner_days l
    USING (SELECT DISTINCT day, user_id FROM unnest(events) WHERE delta < 0) gone
    WHERE l.day = gone.day AND l.user_id = gone.user_id AND l.events <= 0;
    -- The version moves on every learner event of the day, not only when the set changes:
    -- a stale bitmap is rebuilt from learner_days, never used.
    INSERT INTO enrollment_days (day, enrollments, completions, learners_version)
    SELECT day, SUM(enrolled), SUM(completed), 1 FROM unnest(events)
    WHERE day IS NOT NULL AND user_id IS NOT NULL
    GROUP BY day HAVING SUM(enrolled) <> 0 OR SUM(completed) <> 0 OR bool_or(delta <> 0)
    ORDER BY day
    ON CONFLICT (day) DO UPDATE SET
        enrollments = enrollment_days.enrollments + excluded.enrollments,
        completions = enrollment_days.completions + excluded.completions,
        learners_version = enrollment_days.learners_version + 1;
END $$;

-- An enrollment is an event on its enrolment day and, once completed, on its completion day.
CREATE FUNCTION enrollment_events(rows_ enrollments[], sign BIGINT) RETURNS rollup_event[]
LANGUAGE sql STABLE AS $$
    SELECT ARRAY(
        SELECT ROW(r.enrolled_at::date, r.user_id, sign, sign, 0)::rollup_event FROM unnest(rows_) r
        UNION ALL
        SELECT ROW(r.completed_at::date, r.user_id, sign, 0, sign)::rollup_event FROM unnest(rows_) r
        WHERE r.completed_at IS NOT NULL)
$$;

CREATE FUNCTION enrollments_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM rollup_apply(enrollment_events(ARRAY(SELECT n::enrollments FROM new_rows n), 1));
    ELSIF TG_OP = 'UPDATE' THEN
        -- Only rows whose days or learner changed; the additions first, so a pair that keeps
        -- an event never passes through zero.
        PERFORM rollup_apply(
            enrollment_events(ARRAY(
                SELECT n::enrollments FROM new_rows n JOIN old_rows o ON o.id = n.id
                WHERE (o.enrolled_at, o.completed_at, o.user_id)
                      IS DISTINCT FROM (n.enrolled_at, n.completed_at, n.user_id)), 1)
            || enrollment_events(ARRAY(
                SELECT o::enrollments FROM new_rows n JOIN old_rows o ON o.id = n.id
                WHERE (o.enrolled_at, o.completed_at, o.user_id)
                      IS DISTINCT FROM (n.enrolled_at, n.completed_at, n.user_id)), -1)
            -- a completed lesson belongs to the enrollment's learner: it moves with the enrollment
            || ARRAY(
                SELECT ROW(p.completed_at::date, u.user_id, u.sign, 0, 0)::rollup_event
                FROM new_rows n JOIN old_rows o ON o.id = n.id AND o.user_id <> n.user_id
                CROSS JOIN LATERAL (VALUES (n.user_id, 1::bigint), (o.user_id, -1::bigint)) u (user_id, sign)
                JOIN lesson_progress p ON p.enrollment_id = n.id
                WHERE p.completed_at IS NOT NULL));
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER enrollments_rollup_insert AFTER INSERT ON enrollments
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION enrollments_rollup();
CREATE TRIGGER enrollments_rollup_update AFTER UPDATE ON enrollments
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION enrollments_rollup();

-- Deleting an enrollment (directly or by deleting its user) takes its completed lessons with it
-- (ON DELETE CASCADE). They are taken out here, before the row goes, while the lessons can still
-- be seen with it; the lesson_progress trigger then finds no enrollment for them and skips them.
-- Per row: nothing in the service deletes, so bulk deletes are not worth a statement trigger.
CREATE FUNCTION enrollments_rollup_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM rollup_apply(
        enrollment_events(ARRAY[OLD], -1)
        || ARRAY(
            SELECT ROW(p.completed_at::date, OLD.user_id, -1, 0, 0)::rollup_event
            FROM lesson_progress p
            WHERE p.enrollment_id = OLD.id AND p.completed_at IS NOT NULL));
    RETURN OLD;
END $$;

CREATE TRIGGER enrollments_rollup_delete BEFORE DELETE ON enrollments
FOR EACH ROW EXECUTE FUNCTION enrollments_rollup_delete();

-- A completed lesson is an event of its enrollment's learner on its completion day.
CREATE FUNCTION lesson_progress_events(rows_ lesson_progress[], sign BIGINT) RETURNS rollup_event[]
LANGUAGE sql STABLE AS $$
    SELECT ARRAY(
        SELECT ROW(r.completed_at::date, e.user_id, sign, 0, 0)::rollup_event
        FROM unnest(rows_) r JOIN enrollments e ON e.id = r.enrollment_id
        WHERE r.completed_at IS NOT NULL)
$$;

CREATE FUNCTION lesson_progress_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM rollup_apply(lesson_progress_events(ARRAY(SELECT n::lesson_progress FROM new_rows n), 1));
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM rollup_apply(
            lesson_progress_events(ARRAY(
                SELECT n::lesson_progress FROM new_rows n JOIN old_rows o ON o.id = n.id
                WHERE (o.completed_at, o.enrollment_id) IS DISTINCT FROM (n.completed_at, n.enrollment_id)), 1)
            || lesson_progress_events(ARRAY(
                SELECT o::lesson_progress FROM new_rows n JOIN old_rows o ON o.id = n.id
                WHERE (o.completed_at, o.enrollment_id) IS DISTINCT FROM (n.completed_at, n.enrollment_id)), -1));
    ELSE
        -- rows deleted with their enrollment join to nothing: enrollments_rollup_delete took them out
        PERFORM rollup_apply(lesson_progress_events(ARRAY(SELECT o::lesson_progress FROM old_rows o), -1));
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER lesson_progress_rollup_insert AFTER INSERT ON lesson_progress
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION lesson_progress_rollup();
CREATE TRIGGER lesson_progress_rollup_update AFTER UPDATE ON lesson_progress
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION lesson_progress_rollup();
CREATE TRIGGER lesson_progress_rollup_delete AFTER DELETE ON lesson_progress
REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION lesson_progress_rollup();

-- A submission is an event of its learner on its day.
CREATE FUNCTION submission_events(rows_ exercise_submissions[], sign BIGINT) RETURNS rollup_event[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY(
        SELECT ROW(r.submitted_at::date, r.user_id, sign, 0, 0)::rollup_event FROM unnest(rows_) r)
$$;

CREATE FUNCTION exercise_submissions_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM rollup_apply(submission_events(ARRAY(SELECT n::exercise_submissions FROM new_rows n), 1));
    ELSIF TG_OP = 'UPDATE' THEN
        PERFORM rollup_apply(
            submission_events(ARRAY(
                SELECT n::exercise_submissions FROM new_rows n JOIN old_rows o ON o.id = n.id
                WHERE (o.submitted_at, o.user_id) IS DISTINCT FROM (n.submitted_at, n.user_id)), 1)
            || submission_events(ARRAY(
                SELECT o::exercise_submissions FROM new_rows n JOIN old_rows o ON o.id = n.id
                WHERE (o.submitted_at, o.user_id) IS DISTINCT FROM (n.submitted_at, n.user_id)), -1));
    ELSE
        PERFORM rollup_apply(submission_events(ARRAY(SELECT o::exercise_submissions FROM old_rows o), -1));
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER exercise_submissions_rollup_insert AFTER INSERT ON exercise_submissions
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION exercise_submissions_rollup();
CREATE TRIGGER exercise_submissions_rollup_update AFTER UPDATE ON exercise_submissions
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION exercise_submissions_rollup();
CREATE TRIGGER exercise_submissions_rollup_delete AFTER DELETE ON exercise_submissions
REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION exercise_submissions_rollup();

-- Backfill from the rows already there.
INSERT INTO learner_days (day, user_id, events)
SELECT day, user_id, COUNT(*) FROM (
    SELECT enrolled_at::date AS day, user_id FROM enrollments
    UNION ALL
    SELECT completed_at::date, user_id FROM enrollments WHERE completed_at IS NOT NULL
    UNION ALL
    SELECT p.completed_at::date, e.user_id
    FROM lesson_progress p JOIN enrollments e ON e.id = p.enrollment_id
    WHERE p.completed_at IS NOT NULL
    UNION ALL
    SELECT submitted_at::date, user_id FROM exercise_submissions
) events
GROUP BY day, user_id;

INSERT INTO enrollment_days (day, enrollments, completions, learners_version)
SELECT day, SUM(enrolled), SUM(completed), 1 FROM (
    SELECT enrolled_at::date AS day, 1 AS enrolled, 0 AS completed FROM enrollments
    UNION ALL
    SELECT completed_at::date, 0, 1 FROM enrollments WHERE completed_at IS NOT NULL
    UNION ALL
    SELECT DISTINCT day, 0, 0 FROM learner_days
) counts
GROUP BY day;
