-- +goose Up
CREATE TABLE image_adjuster_tasks (
    id                UUID PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    image_url         TEXT NOT NULL,
    brightness        DOUBLE PRECISION NOT NULL DEFAULT 0,
    contrast          DOUBLE PRECISION NOT NULL DEFAULT 0,
    saturation        DOUBLE PRECISION NOT NULL DEFAULT 0,
    gamma             DOUBLE PRECISION NOT NULL DEFAULT 1.0,
    output_format     TEXT NOT NULL DEFAULT 'png',
    result_image_path TEXT
);

-- +goose Down
DROP TABLE image_adjuster_tasks;
