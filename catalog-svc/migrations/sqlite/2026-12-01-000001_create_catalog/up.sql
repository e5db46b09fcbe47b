-- Catalog tables. Timestamps are UTC. Enumerations are text with CHECK constraints so both
-- backends store the same values.
CREATE TABLE categories (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    slug TEXT NOT NULL UNIQUE, -- unique index serves category lookup by slug (course filters, CreateCourse)
    name TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE courses (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    slug TEXT NOT NULL UNIQUE, -- unique index serves GetCourse by slug
    title TEXT NOT NULL,
    summary TEXT NOT NULL,
    course_type TEXT NOT NULL CHECK (course_type IN ('python', 'sql')),
    category_id INTEGER NOT NULL REFERENCES categories (id),
    level TEXT NOT NULL CHECK (level IN ('beginner', 'intermediate', 'advanced')),
    status TEXT NOT NULL CHECK (status IN ('draft', 'published', 'archived')),
    is_featured BOOLEAN NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    published_at TIMESTAMP
);

CREATE TABLE lessons (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    course_id INTEGER NOT NULL REFERENCES courses (id) ON DELETE CASCADE,
    position INTEGER NOT NULL CHECK (position > 0),
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    -- unique index serves GetCourse's lessons (course_id = ? ORDER BY position) and covers the FK
    UNIQUE (course_id, position)
);

CREATE TABLE exercises (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    lesson_id INTEGER NOT NULL REFERENCES lessons (id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    prompt TEXT NOT NULL,
    starter_code TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
