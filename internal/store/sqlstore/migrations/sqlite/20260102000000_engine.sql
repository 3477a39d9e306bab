-- +goose Up
-- When a pending task that never started must fail with start_timeout.
ALTER TABLE tasks ADD COLUMN start_deadline TIMESTAMP;
CREATE INDEX tasks_start_deadline ON tasks (start_deadline) WHERE status = 'pending' AND start_deadline IS NOT NULL;

-- Global concurrency limits per queue, shared by every process.
CREATE TABLE queue_limits (
    queue_name      TEXT PRIMARY KEY,
    max_concurrency INTEGER NOT NULL CHECK (max_concurrency > 0),
    updated_at      TIMESTAMP NOT NULL
);
CREATE INDEX tasks_executing_queue ON tasks (queue_name) WHERE status = 'executing';

-- +goose Down
DROP INDEX tasks_executing_queue;
DROP TABLE queue_limits;
DROP INDEX tasks_start_deadline;
ALTER TABLE tasks DROP COLUMN start_deadline;
