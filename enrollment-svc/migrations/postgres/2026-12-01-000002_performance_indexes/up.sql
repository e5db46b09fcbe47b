-- Performance indexes (the original's Phase 9.1), one per hot query; each line names it.
-- The foreign keys are covered by the unique constraints of the first migration
-- (enrollments.user_id, lesson_progress.enrollment_id) and by the leading column of
-- idx_exercise_submissions_user_exercise (exercise_submissions.user_id).

-- ListEnrollments of a user filtered by status, newest first (the original's idx_tutorial_enrollments_user_status).
CREATE INDEX idx_enrollments_user_status ON enrollments (user_id, status, id);

-- EnrollmentStats: enrollments per day and learners who enrolled in [from, to) (index-only).
CREATE INDEX idx_enrollments_enrolled_at ON enrollments (enrolled_at, user_id);

-- EnrollmentStats: completions per day and learners who completed a course in [from, to) (index-only).
CREATE INDEX idx_enrollments_completed_at ON enrollments (completed_at, user_id);

-- Completed-lesson counts per enrollment: BatchGetEnrollmentState (the original's idx_lesson_progress_enrollment_completed).
CREATE INDEX idx_lesson_progress_enrollment_completed ON lesson_progress (enrollment_id, completed);

-- EnrollmentStats: learners who completed a lesson in [from, to) (joined to enrollments by id).
CREATE INDEX idx_lesson_progress_completed_at ON lesson_progress (completed_at, enrollment_id);

-- ListSubmissions of a user for one exercise, newest first (the original's idx_exercise_submissions_user_exercise); covers the user_id FK.
CREATE INDEX idx_exercise_submissions_user_exercise ON exercise_submissions (user_id, exercise_id, id);

-- ListSubmissions of a user across exercises, newest first (id order without a sort).
CREATE INDEX idx_exercise_submissions_user ON exercise_submissions (user_id, id);

-- EnrollmentStats: learners who submitted in [from, to) (index-only).
CREATE INDEX idx_exercise_submissions_submitted_at ON exercise_submissions (submitted_at, user_id);
