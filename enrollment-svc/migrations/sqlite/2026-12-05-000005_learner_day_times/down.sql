-- Back to 2026-12-05-000004's rollup: learner_days without times, and its view and triggers.
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

CREATE TABLE learner_days_without_times (
    day TEXT NOT NULL,
    user_id INTEGER NOT NULL,
    events INTEGER NOT NULL, -- > 0 once a change is applied
    PRIMARY KEY (day, user_id)
) WITHOUT ROWID;
INSERT INTO learner_days_without_times (day, user_id, events)
SELECT day, user_id, events FROM learner_days;
DROP TABLE learner_days;
ALTER TABLE learner_days_without_times RENAME TO learner_days;

-- One change: a learner's activity on a day (delta +1/-1), and what it adds to the day's counts.
CREATE VIEW rollup_events (day, user_id, delta, enrolled, completed) AS
SELECT NULL, NULL, NULL, NULL, NULL WHERE 0;

CREATE TRIGGER rollup_events_apply INSTEAD OF INSERT ON rollup_events
WHEN NEW.day IS NOT NULL AND NEW.user_id IS NOT NULL
BEGIN
    INSERT INTO learner_days (day, user_id, events) VALUES (NEW.day, NEW.user_id, NEW.delta)
    ON CONFLICT (day, user_id) DO UPDATE SET events = events + excluded.events;
    -- A pair whose last event went is no longer in the day's set.
    DELETE FROM learner_days WHERE day = NEW.day AND user_id = NEW.user_id AND events <= 0;
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
    INSERT INTO rollup_events VALUES (date(NEW.enrolled_at), NEW.user_id, 1, 1, 0);
    INSERT INTO rollup_events
    SELECT date(NEW.completed_at), NEW.user_id, 1, 0, 1 WHERE NEW.completed_at IS NOT NULL;
END;

-- The additions first, so a pair that keeps an event never passes through zero.
CREATE TRIGGER enrollments_rollup_update AFTER UPDATE OF enrolled_at, completed_at, user_id ON enrollments
WHEN OLD.enrolled_at IS NOT NEW.enrolled_at OR OLD.completed_at IS NOT NEW.completed_at
    OR OLD.user_id IS NOT NEW.user_id
BEGIN
    INSERT INTO rollup_events VALUES (date(NEW.enrolled_at), NEW.user_id, 1, 1, 0);
    INSERT INTO rollup_events
    SELECT date(NEW.completed_at), NEW.user_id, 1, 0, 1 WHERE NEW.completed_at IS NOT NULL;
    INSERT INTO rollup_events VALUES (date(OLD.enrolled_at), OLD.user_id, -1, -1, 0);
    INSERT INTO rollup_events
    SELECT date(OLD.completed_at), OLD.user_id, -1, 0, -1 WHERE OLD.completed_at IS NOT NULL;
    -- a completed lesson belongs to the enrollment's learner: it moves with the enrollment
    INSERT INTO rollup_events
    SELECT date(p.completed_at), NEW.user_id, 1, 0, 0 FROM lesson_progress p
    WHERE p.enrollment_id = NEW.id AND p.completed_at IS NOT NULL AND OLD.user_id <> NEW.user_id;
    INSERT INTO rollup_events
    SELECT date(p.completed_at), OLD.user_id, -1, 0, 0 FROM lesson_progress p
    WHERE p.enrollment_id = NEW.id AND p.completed_at IS NOT NULL AND OLD.user_id <> NEW.user_id;
END;

-- Deleting an enrollment (directly or with its user) deletes its lessons (ON DELETE CASCADE).
-- They are taken out here, before the row goes; the lesson_progress trigger then finds no
-- enrollment for them and skips them.
CREATE TRIGGER enrollments_rollup_delete BEFORE DELETE ON enrollments
BEGIN
    INSERT INTO rollup_events
    SELECT date(p.completed_at), OLD.user_id, -1, 0, 0 FROM lesson_progress p
    WHERE p.enrollment_id = OLD.id AND p.completed_at IS NOT NULL;
    INSERT INTO rollup_events VALUES (date(OLD.enrolled_at), OLD.user_id, -1, -1, 0);
    INSERT INTO rollup_events
    SELECT date(OLD.completed_at), OLD.user_id, -1, 0, -1 WHERE OLD.completed_at IS NOT NULL;
END;

-- A completed lesson is an event of its enrollment's learner on its completion day.
CREATE TRIGGER lesson_progress_rollup_insert AFTER INSERT ON lesson_progress
WHEN NEW.completed_at IS NOT NULL
BEGIN
    INSERT INTO rollup_events
    SELECT date(NEW.completed_at), e.user_id, 1, 0, 0 FROM enrollments e WHERE e.id = NEW.enrollment_id;
END;

CREATE TRIGGER lesson_progress_rollup_update AFTER UPDATE OF completed_at, enrollment_id ON lesson_progress
WHEN OLD.completed_at IS NOT NEW.completed_at OR OLD.enrollment_id IS NOT NEW.enrollment_id
BEGIN
    INSERT INTO rollup_events
    SELECT date(NEW.completed_at), e.user_id, 1, 0, 0 FROM enrollments e
    WHERE e.id = NEW.enrollment_id AND NEW.completed_at IS NOT NULL;
    INSERT INTO rollup_events
    SELECT date(OLD.completed_at), e.user_id, -1, 0, 0 FROM enrollments e
    WHERE e.id = OLD.enrollment_id AND OLD.completed_at IS NOT NULL;
END;

-- Rows deleted with their enrollment join to nothing: enrollments_rollup_delete took them out.
CREATE TRIGGER lesson_progress_rollup_delete AFTER DELETE ON lesson_progress
WHEN OLD.completed_at IS NOT NULL
BEGIN
    INSERT INTO rollup_events
    SELECT date(OLD.completed_at), e.user_id, -1, 0, 0 FROM enrollments e WHERE e.id = OLD.enrollment_id;
END;

-- A submission is an event of its learner on its day.
CREATE TRIGGER exercise_submissions_rollup_insert AFTER INSERT ON exercise_submissions
BEGIN
    INSERT INTO rollup_events VALUES (date(NEW.submitted_at), NEW.user_id, 1, 0, 0);
END;

CREATE TRIGGER exercise_submissions_rollup_update AFTER UPDATE OF submitted_at, user_id ON exercise_submissions
WHEN OLD.submitted_at IS NOT NEW.submitted_at OR OLD.user_id IS NOT NEW.user_id
BEGIN
    INSERT INTO rollup_events VALUES (date(NEW.submitted_at), NEW.user_id, 1, 0, 0);
    INSERT INTO rollup_events VALUES (date(OLD.submitted_at), OLD.user_id, -1, 0, 0);
END;

CREATE TRIGGER exercise_submissions_rollup_delete AFTER DELETE ON exercise_submissions
BEGIN
    INSERT INTO rollup_events VALUES (date(OLD.submitted_at), OLD.user_id, -1, 0, 0);
END;
