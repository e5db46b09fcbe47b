DROP INDEX idx_exercises_lesson;
DROP INDEX idx_courses_featured;
DROP INDEX idx_courses_category_status;
DROP INDEX idx_courses_status_type;
