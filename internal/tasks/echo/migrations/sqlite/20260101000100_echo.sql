-- +goose Up
CREATE TABLE echo_tasks (
    id        TEXT PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    message   TEXT NOT NULL,
    sleep_ms  INTEGER NOT NULL DEFAULT 0,
    fail_with TEXT NOT NULL DEFAULT ''
);

-- +goose Down
DROP TABLE echo_tasks;
