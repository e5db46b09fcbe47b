-- Each learner-day's first and last activity time (see docs/enrollment-rollup.md), so that
-- EnrollmentStats answers the partial days at the ends of a range spanning two or more days from
-- learner_days: a learner is active in [from, next midnight) iff last_at >= from, and in
-- [midnight, to) iff first_at < to.
-- Kept exact by the same triggers: an added event widens [first_at, last_at]; a removed event at
-- first_at or last_at (deleted, moved, uncompleted) has the pair's bounds recomputed from the raw
-- rows of that learner and day (a handful of rows, by user_id).

-- No write may slip between the backfill and the new triggers.
LOCK TABLE enrollments, lesson_progress, exercise_submissions IN SHARE ROW EXCLUSIVE MODE;

-- Rebuilt rather than updated in place: one insert of 4.65M rows at scale 1 instead of an update
-- of each. The events counts are recomputed equal (the triggers kept them exact), so the sets,
-- the versions and the stored bitmaps stay valid.
TRUNCATE learner_days;
ALTER TABLE learner_days
    ADD COLUMN first_at TIMESTAMP NOT NULL,
    ADD COLUMN last_at TIMESTAMP NOT NULL;

-- An event now carries its time.
ALTER TYPE rollup_event ADD ATTRIBUTE at TIMESTAMP;

-- The first and last activity of a learner on a day from the raw rows, leaving out the
-- enrollment `gone_enrollment` (being deleted, with its lessons); NULLs when there is none.
CREATE FUNCTION learner_day_bounds(day_ DATE, user_id_ BIGINT, gone_enrollment BIGINT,
                                   OUT first_at TIMESTAMP, OUT last_at TIMESTAMP)
LANGUAGE sql STABLE AS $$
    SELECT MIN(t), MAX(t) FROM (
        SELECT enrolled_at FROM enrollments
        WHERE user_id = user_id_ AND enrolled_at >= day_ AND enrolled_at < day_ + 1
          AND id IS DISTINCT FROM gone_enrollment
        UNION ALL
        SELECT completed_at FROM enrollments
        WHERE user_id = user_id_ AND completed_at >= day_ AND completed_at < day_ + 1
          AND id IS DISTINCT FROM gone_enrollment
        UNION ALL
        SELECT p.completed_at FROM enrollments e JOIN lesson_progress p ON p.enrollment_id = e.id
        WHERE e.user_id = user_id_ AND p.completed_at >= day_ AND p.completed_at < day_ + 1
          AND e.id IS DISTINCT FROM gone_enrollment
        UNION ALL
        SELECT submitted_at FROM exercise_submissions
        WHERE user_id = user_id_ AND submitted_at >= day_ AND submitted_at < day_ + 1
    ) events (t)
$$;

DROP FUNCTION rollup_apply(rollup_event[]);
CREATE FUNCTION rollup_apply(events rollup_event[], gone_enrollment BIGINT DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- Pairs that only lose events are upserted too (their bounds come from the additions, or
    -- from the removals, which LEAST/GREATEST then leave out as they lie within the old bounds);
    -- pairs that gain and lose as many events (a submission moved within its day) too.
    INSERT INTO learner_days (day, user_id, events, first_at, last_at)
    SELECT day, user_id, SUM(delta),
           COALESCE(MIN(at) FILTER (WHERE delta > 0), MIN(at)),
           COALESCE(MAX(at) FILTER (WHERE delta > 0), MAX(at))
    FROM unnest(events)
    WHERE day IS NOT NULL AND user_id IS NOT NULL
    GROUP BY day, user_id HAVING SUM(delta) <> 0 OR bool_or(delta > 0)
    ORDER BY day, user_id
    ON CONFLICT (day, user_id) DO UPDATE SET
        events = learner_days.events + excluded.events,
        first_at = LEAST(learner_days.first_at, excluded.first_at),
        last_at = GREATEST(learner_days.last_at, excluded.last_at);
    -- A pair whose last event went is no longer in the day's set.
    DELETE FROM learner_days l
    USING (SELECT DISTINCT day, user_id FROM unnest(events) WHERE delta < 0) gone
    WHERE l.day = gone.day AND l.user_id = gone.user_id AND l.events <= 0;
    -- A removed event that held a bound: the pair's bounds from the raw rows as they are now.
    -- Never empty while the pair has events (the enrollment being deleted, left out, takes all
    -- its events out in this same call), so the COALESCE only guards the NOT NULL.
    UPDATE learner_days l SET (first_at, last_at) = (
        SELECT COALESCE(b.first_at, l.first_at), COALESCE(b.last_at, l.last_at)
        FROM learner_day_bounds(l.day, l.user_id, gone_enrollment) b)
    FROM (SELECT DISTINCT day, user_id, at FROM unnest(events) WHERE delta < 0) gone
    WHERE l.day = gone.day AND l.user_id = gone.user_id
      AND (gone.at = l.first_at OR gone.at = l.last_at);
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
CREATE OR REPLACE FUNCTION enrollment_events(rows_ enrollments[], sign BIGINT) RETURNS rollup_event[]
LANGUAGE sql STABLE AS $$
    SELECT ARRAY(
        SELECT ROW(r.enrolled_at::date, r.user_id, sign, sign, 0, r.enrolled_at)::rollup_event
        FROM unnest(rows_) r
        UNION ALL
        SELECT ROW(r.completed_at::date, r.user_id, sign, 0, sign, r.completed_at)::rollup_event
        FROM unnest(rows_) r
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
                SELECT ROW(p.completed_at::date, u.user_id, u.sign, 0, 0, p.completed_at)::rollup_event
                FROM new_rows n JOIN old_rows o ON o.id = n.id AND o.user_id <> n.user_id
                CROSS JOIN LATERAL (VALUES (n.user_id, 1::bigint), (o.user_id, -1::bigint)) u (user_id, sign)
                JOIN lesson_progress p ON p.enrollment_id = n.id
                WHERE p.completed_at IS NOT NULL));
    END IF;
    RETURN NULL;
END $$;

-- The enrollment and its lessons are still there in a BEFORE trigger: the bounds recomputed
-- here leave the enrollment out.
CREATE OR REPLACE FUNCTION enrollments_rollup_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM rollup_apply(
        enrollment_events(ARRAY[OLD], -1)
        || ARRAY(
            SELECT ROW(p.completed_at::date, OLD.user_id, -1, 0, 0, p.completed_at)::rollup_event
            FROM lesson_progress p
            WHERE p.enrollment_id = OLD.id AND p.completed_at IS NOT NULL),
        OLD.id);
    RETURN OLD;
END $$;

-- A completed lesson is an event of its enrollment's learner on its completion day.
CREATE OR REPLACE FUNCTION lesson_progress_events(rows_ lesson_progress[], sign BIGINT) RETURNS rollup_event[]
LANGUAGE sql STABLE AS $$
    SELECT ARRAY(
        SELECT ROW(r.completed_at::date, e.user_id, sign, 0, 0, r.completed_at)::rollup_event
        FROM unnest(rows_) r JOIN enrollments e ON e.id = r.enrollment_id
        WHERE r.completed_at IS NOT NULL)
$$;

-- A submission is an event of its learner on its day.
CREATE OR REPLACE FUNCTION submission_events(rows_ exercise_submissions[], sign BIGINT) RETURNS rollup_event[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY(
        SELECT ROW(r.submitted_at::date, r.user_id, sign, 0, 0, r.submitted_at)::rollup_event
        FROM unnest(rows_) r)
$$;

-- Backfill from the rows already there, in key order: a day's rows then sit on a few hundred
-- consecutive pages (rows appended by the triggers arrive day by day too) instead of one page
-- each, so reading one day's learners is a short scan.
INSERT INTO learner_days (day, user_id, events, first_at, last_at)
SELECT at::date, user_id, COUNT(*), MIN(at), MAX(at) FROM (
    SELECT enrolled_at AS at, user_id FROM enrollments
    UNION ALL
    SELECT completed_at, user_id FROM enrollments WHERE completed_at IS NOT NULL
    UNION ALL
    SELECT p.completed_at, e.user_id
    FROM lesson_progress p JOIN enrollments e ON e.id = p.enrollment_id
    WHERE p.completed_at IS NOT NULL
    UNION ALL
    SELECT submitted_at, user_id FROM exercise_submissions
) events
GROUP BY at::date, user_id
ORDER BY at::date, user_id;
-- Fresh statistics for the planner: the table was just rebuilt.
ANALYZE learner_days;
