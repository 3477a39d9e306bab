-- +goose Up
CREATE TABLE refine_tasks (
    id                TEXT PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    image_url         TEXT NOT NULL,
    upscale_factor    REAL NOT NULL DEFAULT 2,
    strength          REAL NOT NULL DEFAULT 1,
    result_image_path TEXT
);

-- +goose Down
DROP TABLE refine_tasks;
