-- Published courses per (category, course type), kept exact by the database in the transaction of
-- every write to `courses` (see docs/census.md): the census reads these few rows instead of
-- aggregating every published course. A key that no longer has published courses keeps its row
-- at 0. SQLite has one writer at a time, so row triggers need no lock ordering.
CREATE TABLE course_counts (
    category_id INTEGER NOT NULL, -- no foreign key: derived from courses.category_id, which has one
    course_type TEXT NOT NULL,
    published INTEGER NOT NULL,
    PRIMARY KEY (category_id, course_type)
) WITHOUT ROWID;

CREATE TRIGGER course_counts_insert AFTER INSERT ON courses
WHEN NEW.status = 'published'
BEGIN
    INSERT INTO course_counts (category_id, course_type, published)
    VALUES (NEW.category_id, NEW.course_type, 1)
    ON CONFLICT (category_id, course_type) DO UPDATE SET published = published + 1;
END;

-- Only the columns the counts depend on: a title or `updated_at` change does not fire it.
CREATE TRIGGER course_counts_update AFTER UPDATE OF status, course_type, category_id ON courses
WHEN OLD.status = 'published' OR NEW.status = 'published'
BEGIN
    UPDATE course_counts SET published = published - 1
    WHERE OLD.status = 'published'
      AND category_id = OLD.category_id AND course_type = OLD.course_type;
    INSERT INTO course_counts (category_id, course_type, published)
    SELECT NEW.category_id, NEW.course_type, 1 WHERE NEW.status = 'published'
    ON CONFLICT (category_id, course_type) DO UPDATE SET published = published + 1;
END;

CREATE TRIGGER course_counts_delete AFTER DELETE ON courses
WHEN OLD.status = 'published'
BEGIN
    UPDATE course_counts SET published = published - 1
    WHERE category_id = OLD.category_id AND course_type = OLD.course_type;
END;

INSERT INTO course_counts (category_id, course_type, published)
SELECT category_id, course_type, COUNT(*) FROM courses
WHERE status = 'published'
GROUP BY category_id, course_type;
