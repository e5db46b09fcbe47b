-- Back to 2026-12-05-000004's rollup: learner_days without times, the functions as they were
-- (the triggers call them by name and stay).
DROP FUNCTION rollup_apply(rollup_event[], BIGINT);
DROP FUNCTION learner_day_bounds(DATE, BIGINT, BIGINT);
ALTER TYPE rollup_event DROP ATTRIBUTE at;
ALTER TABLE learner_days DROP COLUMN first_at, DROP COLUMN last_at;

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

CREATE OR REPLACE FUNCTION enrollment_events(rows_ enrollments[], sign BIGINT) RETURNS rollup_event[]
LANGUAGE sql STABLE AS $$
    SELECT ARRAY(
        SELECT ROW(r.enrolled_at::date, r.user_id, sign, sign, 0)::rollup_event FROM unnest(rows_) r
        UNION ALL
        SELECT ROW(r.completed_at::date, r.user_id, sign, 0, sign)::rollup_event FROM unnest(rows_) r
        WHERE r.completed_at IS NOT NULL)
$$;

CREATE OR REPLACE FUNCTION enrollments_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE OR REPLACE FUNCTION enrollments_rollup_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM rollup_apply(
        enrollment_events(ARRAY[OLD], -1)
        || ARRAY(
            SELECT ROW(p.completed_at::date, OLD.user_id, -1, 0, 0)::rollup_event
            FROM lesson_progress p
            WHERE p.enrollment_id = OLD.id AND p.completed_at IS NOT NULL));
    RETURN OLD;
END $$;

CREATE OR REPLACE FUNCTION lesson_progress_events(rows_ lesson_progress[], sign BIGINT) RETURNS rollup_event[]
LANGUAGE sql STABLE AS $$
    SELECT ARRAY(
        SELECT ROW(r.completed_at::date, e.user_id, sign, 0, 0)::rollup_event
        FROM unnest(rows_) r JOIN enrollments e ON e.id = r.enrollment_id
        WHERE r.completed_at IS NOT NULL)
$$;

CREATE OR REPLACE FUNCTION submission_events(rows_ exercise_submissions[], sign BIGINT) RETURNS rollup_event[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY(
        SELECT ROW(r.submitted_at::date, r.user_id, sign, 0, 0)::rollup_event FROM unnest(rows_) r)
$$;
