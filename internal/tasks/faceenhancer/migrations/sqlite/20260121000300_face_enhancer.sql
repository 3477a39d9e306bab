-- +goose Up
CREATE TABLE face_enhancer_tasks (
    id                TEXT PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    image_url         TEXT NOT NULL,
    strength          REAL NOT NULL DEFAULT 0.8,
    min_confidence    REAL NOT NULL DEFAULT 0.5,
    faces_found       INTEGER,
    result_image_path TEXT
);

-- +goose Down
DROP TABLE face_enhancer_tasks;
