-- +goose Up
CREATE TABLE image_adjuster_tasks (
    id                TEXT PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    image_url         TEXT NOT NULL,
    brightness        REAL NOT NULL DEFAULT 0,
    contrast          REAL NOT NULL DEFAULT 0,
    saturation        REAL NOT NULL DEFAULT 0,
    gamma             REAL NOT NULL DEFAULT 1.0,
    output_format     TEXT NOT NULL DEFAULT 'png',
    result_image_path TEXT
);

-- +goose Down
DROP TABLE image_adjuster_tasks;
