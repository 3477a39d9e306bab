-- +goose Up
-- The monitoring view (store.Monitor). Pending tasks by queue with their
-- creation times answer the pending counts and the oldest pending task
-- from the index alone; finished tasks by completion time (with queue and
-- status) answer the counts of the last 15 minutes from a short index
-- range. processes is the registry of live processes and their heartbeats.
CREATE INDEX IF NOT EXISTS tasks_pending_queue ON tasks (queue_name, created_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS tasks_finished_queue ON tasks (completed_at, queue_name, status) WHERE completed_at IS NOT NULL;
CREATE TABLE processes (
    instance     TEXT PRIMARY KEY,
    role         TEXT NOT NULL,
    version      TEXT NOT NULL DEFAULT '',
    started_at   TIMESTAMP NOT NULL,
    last_seen_at TIMESTAMP NOT NULL
);
CREATE INDEX processes_last_seen ON processes (last_seen_at);

-- +goose Down
DROP TABLE processes;
DROP INDEX tasks_finished_queue;
DROP INDEX tasks_pending_queue;
