-- +goose Up
CREATE TABLE editing_tasks (
    id                   TEXT PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    image_url            TEXT NOT NULL,
    reference_image_urls TEXT,
    prompt               TEXT NOT NULL,
    mask_url             TEXT,
    width                INTEGER,
    height               INTEGER,
    seed                 INTEGER,
    comfy_workflow       TEXT,
    result_image_path    TEXT
);

-- +goose Down
DROP TABLE editing_tasks;
