-- Each learner-day's first and last activity time (see docs/enrollment-rollup.md and the
-- Postgres twin of this migration): a learner is active in [from, next midnight) iff
-- last_at >= from, and in [midnight, to) iff first_at < to. An added event widens
-- [first_at, last_at]; a removed event at first_at or last_at has the pair's bounds recomputed
-- from the raw rows of that learner and day. The triggers and their view are replaced (an event
-- now carries its time), and learner_days is rebuilt with the new columns (SQLite cannot add a
-- NOT NULL column without a default); the rebuilt counts equal the maintained ones, so the
-- versions and stored bitmaps stay valid.
DROP TRIGGER exercise_submissions_rollup_delete;
DROP TRIGGER exercise_submissions_rollup_update;
DROP TRIGGER exercise_submissions_rollup_insert;
DROP TRIGGER lesson_progress_rollup_delete;
DROP TRIGGER lesson_progress_rollup_update;
DROP TRIGGER lesson_progress_rollup_insert;
DROP TRIGGER enrollments_rollup_delete;
DROP TRIGGER enrollments_rollup_update;
DROP TRIGGER enrollments_rollup_insert;
DROP TRIGGER rollup_events_apply;
DROP VIEW rollup_events;

CREATE TABLE learner_days_with_times (
    day TEXT NOT NULL,
    user_id INTEGER NOT NULL,
    events INTEGER NOT NULL, -- > 0 once a change is applied
    first_at TIMESTAMP NOT NULL,
    last_at TIMESTAMP NOT NULL,
    PRIMARY KEY (day, user_id)
) WITHOUT ROWID;

INSERT INTO learner_days_with_times (day, user_id, events, first_at, last_at)
SELECT date(at), user_id, COUNT(*), MIN(at), MAX(at) FROM (
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
WHERE true
GROUP BY date(at), user_id;

DROP TABLE learner_days;
ALTER TABLE learner_days_with_times RENAME TO learner_days;

-- One change: a learner's activity at a moment (delta +1/-1), what it adds to the day's counts,
-- and the enrollment being deleted if the change comes from its deletion (left out of a
-- recomputation, as it is still there in a BEFORE trigger).
CREATE VIEW rollup_events (day, user_id, delta, enrolled, completed, at, gone_enrollment) AS
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE 0;

CREATE TRIGGER rollup_events_apply INSTEAD OF INSERT ON rollup_events
WHEN NEW.day IS NOT NULL AND NEW.user_id IS NOT NULL
BEGIN
    -- An added event widens the bounds; a removed one leaves them to the recomputation below.
    INSERT INTO learner_days (day, user_id, events, first_at, last_at)
    VALUES (NEW.day, NEW.user_id, NEW.delta, NEW.at, NEW.at)
    ON CONFLICT (day, user_id) DO UPDATE SET
        events = events + excluded.events,
        first_at = CASE WHEN excluded.events > 0 THEN min(first_at, excluded.first_at) ELSE first_at END,
        last_at = CASE WHEN excluded.events > 0 THEN max(last_at, excluded.last_at) ELSE last_at END;
    -- A pair whose last event went is no longer in the day's set.
    DELETE FROM learner_days WHERE day = NEW.day AND user_id = NEW.user_id AND events <= 0;
    -- A removed event that held a bound: the pair's bounds from the raw rows as they are now.
    -- Empty only when the remaining events all belong to the enrollment being deleted, which
    -- takes them out in this same trigger: then the bounds are left as they are.
    UPDATE learner_days SET (first_at, last_at) = (
        SELECT COALESCE(MIN(t), learner_days.first_at), COALESCE(MAX(t), learner_days.last_at)
        FROM (
            SELECT enrolled_at AS t FROM enrollments
            WHERE user_id = NEW.user_id AND date(enrolled_at) = NEW.day
              AND id IS NOT NEW.gone_enrollment
            UNION ALL
            SELECT completed_at FROM enrollments
            WHERE user_id = NEW.user_id AND date(completed_at) = NEW.day
              AND id IS NOT NEW.gone_enrollment
            UNION ALL
            SELECT p.completed_at FROM enrollments e JOIN lesson_progress p ON p.enrollment_id = e.id
            WHERE e.user_id = NEW.user_id AND date(p.completed_at) = NEW.day
              AND e.id IS NOT NEW.gone_enrollment
            UNION ALL
            SELECT submitted_at FROM exercise_submissions
            WHERE user_id = NEW.user_id AND date(submitted_at) = NEW.day))
    WHERE NEW.delta < 0 AND day = NEW.day AND user_id = NEW.user_id
      AND (first_at = NEW.at OR last_at = NEW.at);
    -- The version moves on every learner event of the day: a stale bitmap is rebuilt, never used.
    INSERT INTO enrollment_days (day, enrollments, completions, learners_version)
    VALUES (NEW.day, NEW.enrolled, NEW.completed, 1)
    ON CONFLICT (day) DO UPDATE SET
        enrollments = enrollments + excluded.enrollments,
        completions = completions + excluded.completions,
        learners_version = learners_version + 1;
END;

-- An enrollment is an event on its enrolment day and, once completed, on its completion day.
CREATE TRIGGER enrollments_rollup_insert AFTER INSERT ON enrollments
BEGIN
    INSERT INTO rollup_events VALUES (date(NEW.enrolled_at), NEW.user_id, 1, 1, 0, NEW.enrolled_at, NULL);
    INSERT INTO rollup_events
    SELECT date(NEW.completed_at), NEW.user_id, 1, 0, 1, NEW.completed_at, NULL
    WHERE NEW.completed_at IS NOT NULL;
END;

-- The additions first, so a pair that keeps an event never passes through zero.
CREATE TRIGGER enrollments_rollup_update AFTER UPDATE OF enrolled_at, completed_at, user_id ON enrollments
WHEN OLD.enrolled_at IS NOT NEW.enrolled_at OR OLD.completed_at IS NOT NEW.completed_at
    OR OLD.user_id IS NOT NEW.user_id
BEGIN
    INSERT INTO rollup_events VALUES (date(NEW.enrolled_at), NEW.user_id, 1, 1, 0, NEW.enrolled_at, NULL);
    INSERT INTO rollup_events
    SELECT date(NEW.completed_at), NEW.user_id, 1, 0, 1, NEW.completed_at, NULL
    WHERE NEW.completed_at IS NOT NULL;
    INSERT INTO rollup_events VALUES (date(OLD.enrolled_at), OLD.user_id, -1, -1, 0, OLD.enrolled_at, NULL);
    INSERT INTO rollup_events
    SELECT date(OLD.completed_at), OLD.user_id, -1, 0, -1, OLD.completed_at, NULL
    WHERE OLD.completed_at IS NOT NULL;
    -- a completed lesson belongs to the enrollment's learner: it moves with the enrollment
    INSERT INTO rollup_events
    SELECT date(p.completed_at), NEW.user_id, 1, 0, 0, p.completed_at, NULL FROM lesson_progress p
    WHERE p.enrollment_id = NEW.id AND p.completed_at IS NOT NULL AND OLD.user_id <> NEW.user_id;
    INSERT INTO rollup_events
    SELECT date(p.completed_at), OLD.user_id, -1, 0, 0, p.completed_at, NULL FROM lesson_progress p
    WHERE p.enrollment_id = NEW.id AND p.completed_at IS NOT NULL AND OLD.user_id <> NEW.user_id;
END;

-- Deleting an enrollment (directly or with its user) deletes its lessons (ON DELETE CASCADE).
-- They are taken out here, before the row goes; the lesson_progress trigger then finds no
-- enrollment for them and skips them. The bounds recomputed here leave the enrollment out.
CREATE TRIGGER enrollments_rollup_delete BEFORE DELETE ON enrollments
BEGIN
    INSERT INTO rollup_events
    SELECT date(p.completed_at), OLD.user_id, -1, 0, 0, p.completed_at, OLD.id FROM lesson_progress p
    WHERE p.enrollment_id = OLD.id AND p.completed_at IS NOT NULL;
    INSERT INTO rollup_events VALUES (date(OLD.enrolled_at), OLD.user_id, -1, -1, 0, OLD.enrolled_at, OLD.id);
    INSERT INTO rollup_events
    SELECT date(OLD.completed_at), OLD.user_id, -1, 0, -1, OLD.completed_at, OLD.id
    WHERE OLD.completed_at IS NOT NULL;
END;

-- A completed lesson is an event of its enrollment's learner on its completion day.
CREATE TRIGGER lesson_progress_rollup_insert AFTER INSERT ON lesson_progress
WHEN NEW.completed_at IS NOT NULL
BEGIN
    INSERT INTO rollup_events
    SELECT date(NEW.completed_at), e.user_id, 1, 0, 0, NEW.completed_at, NULL
    FROM enrollments e WHERE e.id = NEW.enrollment_id;
END;

CREATE TRIGGER lesson_progress_rollup_update AFTER UPDATE OF completed_at, enrollment_id ON lesson_progress
WHEN OLD.completed_at IS NOT NEW.completed_at OR OLD.enrollment_id IS NOT NEW.enrollment_id
BEGIN
    INSERT INTO rollup_events
    SELECT date(NEW.completed_at), e.user_id, 1, 0, 0, NEW.completed_at, NULL FROM enrollments e
    WHERE e.id = NEW.enrollment_id AND NEW.completed_at IS NOT NULL;
    INSERT INTO rollup_events
    SELECT date(OLD.completed_at), e.user_id, -1, 0, 0, OLD.completed_at, NULL FROM enrollments e
    WHERE e.id = OLD.enrollment_id AND OLD.completed_at IS NOT NULL;
END;

-- Rows deleted with their enrollment join to nothing: enrollments_rollup_delete took them out.
CREATE TRIGGER lesson_progress_rollup_delete AFTER DELETE ON lesson_progress
WHEN OLD.completed_at IS NOT NULL
BEGIN
    INSERT INTO rollup_events
    SELECT date(OLD.completed_at), e.user_id, -1, 0, 0, OLD.completed_at, NULL
    FROM enrollments e WHERE e.id = OLD.enrollment_id;
END;

-- A submission is an event of its learner on its day.
CREATE TRIGGER exercise_submissions_rollup_insert AFTER INSERT ON exercise_submissions
BEGIN
    INSERT INTO rollup_events VALUES (date(NEW.submitted_at), NEW.user_id, 1, 0, 0, NEW.submitted_at, NULL);
END;

CREATE TRIGGER exercise_submissions_rollup_update AFTER UPDATE OF submitted_at, user_id ON exercise_submissions
WHEN OLD.submitted_at IS NOT NEW.submitted_at OR OLD.user_id IS NOT NEW.user_id
BEGIN
    INSERT INTO rollup_events VALUES (date(NEW.submitted_at), NEW.user_id, 1, 0, 0, NEW.submitted_at, NULL);
    INSERT INTO rollup_events VALUES (date(OLD.submitted_at), OLD.user_id, -1, 0, 0, OLD.submitted_at, NULL);
END;

CREATE TRIGGER exercise_submissions_rollup_delete AFTER DELETE ON exercise_submissions
BEGIN
    INSERT INTO rollup_events VALUES (date(OLD.submitted_at), OLD.user_id, -1, 0, 0, OLD.submitted_at, NULL);
END;
