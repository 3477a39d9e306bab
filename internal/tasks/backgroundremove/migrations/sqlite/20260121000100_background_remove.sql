-- +goose Up
CREATE TABLE background_remove_tasks (
    id                TEXT PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    image_url         TEXT NOT NULL,
    model             TEXT NOT NULL DEFAULT 'medium',
    result_image_path TEXT
);

-- +goose Down
DROP TABLE background_remove_tasks;
