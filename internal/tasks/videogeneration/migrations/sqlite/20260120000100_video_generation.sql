-- +goose Up
CREATE TABLE video_generation_tasks (
    id                TEXT PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    image_url         TEXT NOT NULL,
    prompt            TEXT,
    duration          REAL NOT NULL DEFAULT 5,
    fps               INTEGER NOT NULL DEFAULT 24,
    width             INTEGER,
    height            INTEGER,
    motion            TEXT NOT NULL DEFAULT 'zoom_in',
    seed              INTEGER,
    result_video_path TEXT
);

-- +goose Down
DROP TABLE video_generation_tasks;
