DROP TABLE exercises;
DROP TABLE lessons;
DROP TABLE courses;
DROP TABLE categories;
