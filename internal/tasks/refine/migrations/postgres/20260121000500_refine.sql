-- +goose Up
CREATE TABLE refine_tasks (
    id                UUID PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    image_url         TEXT NOT NULL,
    upscale_factor    DOUBLE PRECISION NOT NULL DEFAULT 2,
    strength          DOUBLE PRECISION NOT NULL DEFAULT 1,
    result_image_path TEXT
);

-- +goose Down
DROP TABLE refine_tasks;
