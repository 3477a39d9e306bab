-- +goose Up
CREATE TABLE detail_enhancer_tasks (
    id                TEXT PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    image_url         TEXT NOT NULL,
    strength          REAL NOT NULL DEFAULT 0.5,
    radius            REAL NOT NULL DEFAULT 1.5,
    result_image_path TEXT
);

-- +goose Down
DROP TABLE detail_enhancer_tasks;
