DROP TRIGGER course_counts_delete;
DROP TRIGGER course_counts_update;
DROP TRIGGER course_counts_insert;
DROP TABLE course_counts;
