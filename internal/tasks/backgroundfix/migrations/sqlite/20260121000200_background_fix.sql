-- +goose Up
CREATE TABLE background_fix_tasks (
    id                    TEXT PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    image_url             TEXT NOT NULL,
    background_color      TEXT,
    background_image_url  TEXT,
    background_prompt     TEXT,
    is_cutout             INTEGER NOT NULL DEFAULT 0,
    output_format         TEXT NOT NULL DEFAULT 'png',
    cutout_image_path     TEXT,
    background_image_path TEXT,
    result_image_path     TEXT
);

-- +goose Down
DROP TABLE background_fix_tasks;
