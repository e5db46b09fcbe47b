DROP TRIGGER course_counts_truncate ON courses;
DROP TRIGGER course_counts_delete ON courses;
DROP TRIGGER course_counts_update ON courses;
DROP TRIGGER course_counts_insert ON courses;
DROP FUNCTION course_counts_apply();
DROP TABLE course_counts;
