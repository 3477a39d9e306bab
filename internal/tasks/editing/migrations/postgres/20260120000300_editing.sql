-- +goose Up
CREATE TABLE editing_tasks (
    id                   UUID PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    image_url            TEXT NOT NULL,
    reference_image_urls JSONB,
    prompt               TEXT NOT NULL,
    mask_url             TEXT,
    width                BIGINT,
    height               BIGINT,
    seed                 BIGINT,
    comfy_workflow       TEXT,
    result_image_path    TEXT
);

-- +goose Down
DROP TABLE editing_tasks;
