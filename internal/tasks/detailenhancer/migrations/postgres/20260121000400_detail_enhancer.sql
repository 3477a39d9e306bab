-- +goose Up
CREATE TABLE detail_enhancer_tasks (
    id                UUID PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    image_url         TEXT NOT NULL,
    strength          DOUBLE PRECISION NOT NULL DEFAULT 0.5,
    radius            DOUBLE PRECISION NOT NULL DEFAULT 1.5,
    result_image_path TEXT
);

-- +goose Down
DROP TABLE detail_enhancer_tasks;
