-- +goose Up
CREATE TABLE bench_probe_tasks (
    id    TEXT PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    label TEXT NOT NULL DEFAULT ''
);

-- +goose Down
DROP TABLE bench_probe_tasks;
