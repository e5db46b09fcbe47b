DROP TABLE exercise_submissions;
DROP TABLE lesson_progress;
DROP TABLE enrollments;
DROP TABLE users;
