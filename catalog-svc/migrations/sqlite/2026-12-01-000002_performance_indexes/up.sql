-- Performance indexes (the original's Phase 9.1), one per hot query; each line names it.

-- ListCourses filtered by status and type, ordered by id (the original's idx_tutorials_status_type);
-- also the per-type published counts of GetCatalogSummary (index-only).
CREATE INDEX idx_courses_status_type ON courses (status, course_type, id);

-- ListCourses filtered by category (+ status), ordered by id; covers the category_id FK and the
-- categories-with-counts join of ListCategories / GetCatalogSummary.
CREATE INDEX idx_courses_category_status ON courses (category_id, status, id);

-- Featured courses per type (GetCatalogSummary): is_featured + status + type, ordered by id.
CREATE INDEX idx_courses_featured ON courses (is_featured, status, course_type, id);

-- ListExercises of a lesson in id order; covers the lesson_id FK (cascade deletes).
CREATE INDEX idx_exercises_lesson ON exercises (lesson_id, id);
