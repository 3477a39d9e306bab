-- +goose Up
CREATE TABLE face_enhancer_tasks (
    id                UUID PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    image_url         TEXT NOT NULL,
    strength          DOUBLE PRECISION NOT NULL DEFAULT 0.8,
    min_confidence    DOUBLE PRECISION NOT NULL DEFAULT 0.5,
    faces_found       BIGINT,
    result_image_path TEXT
);

-- +goose Down
DROP TABLE face_enhancer_tasks;
