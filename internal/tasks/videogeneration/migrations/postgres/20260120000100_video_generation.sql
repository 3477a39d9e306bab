-- +goose Up
CREATE TABLE video_generation_tasks (
    id                UUID PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    image_url         TEXT NOT NULL,
    prompt            TEXT,
    duration          DOUBLE PRECISION NOT NULL DEFAULT 5,
    fps               BIGINT NOT NULL DEFAULT 24,
    width             BIGINT,
    height            BIGINT,
    motion            TEXT NOT NULL DEFAULT 'zoom_in',
    seed              BIGINT,
    result_video_path TEXT
);

-- +goose Down
DROP TABLE video_generation_tasks;
