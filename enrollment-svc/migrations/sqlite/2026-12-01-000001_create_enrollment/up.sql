-- Enrollment tables. Timestamps are UTC. Enumerations are text with CHECK constraints so both
-- backends store the same values. Course, lesson and exercise ids belong to catalog-svc's
-- database (database per service), so they are plain ids without foreign keys.
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL, -- as the learner typed it, for display
    -- lowercased: the unique index serves GetUserByEmail and refuses a duplicate email in any case
    email_normalized TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('learner', 'admin')),
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE enrollments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    course_id INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'completed', 'dropped')),
    enrolled_at TIMESTAMP NOT NULL,
    completed_at TIMESTAMP,
    updated_at TIMESTAMP NOT NULL,
    -- unique index serves Enroll (ON CONFLICT, then the lookup) and BatchGetEnrollmentState
    -- (user_id = ? AND course_id IN (...)); covers the user_id FK
    UNIQUE (user_id, course_id),
    CHECK ((status = 'completed') = (completed_at IS NOT NULL))
);

CREATE TABLE lesson_progress (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    enrollment_id INTEGER NOT NULL REFERENCES enrollments (id) ON DELETE CASCADE,
    lesson_id INTEGER NOT NULL,
    completed BOOLEAN NOT NULL,
    completed_at TIMESTAMP,
    updated_at TIMESTAMP NOT NULL,
    -- unique index serves RecordLessonProgress's upsert and GetProgress (enrollment_id = ?);
    -- covers the enrollment_id FK
    UNIQUE (enrollment_id, lesson_id),
    CHECK (completed = (completed_at IS NOT NULL))
);

CREATE TABLE exercise_submissions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    exercise_id INTEGER NOT NULL,
    code TEXT NOT NULL,
    passed BOOLEAN NOT NULL,
    score INTEGER NOT NULL CHECK (score BETWEEN 0 AND 100),
    submitted_at TIMESTAMP NOT NULL
);
