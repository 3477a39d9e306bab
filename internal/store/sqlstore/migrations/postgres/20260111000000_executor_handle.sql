-- +goose Up
-- The handle of the job a task's executor started (package executor's
-- Handle as JSON: executor name, server, external id, a versioned state
-- blob), saved when the job is submitted so a recovered run re-attaches to
-- it whatever the task's type. service_task_id keeps the external id as the
-- original's public field.
ALTER TABLE tasks ADD COLUMN executor_handle JSONB;
-- Whether the client named the executor (provider_type) at create: the
-- type's fallback executors never take over such a task.
ALTER TABLE tasks ADD COLUMN provider_requested BOOLEAN NOT NULL DEFAULT FALSE;

-- +goose Down
ALTER TABLE tasks DROP COLUMN provider_requested;
ALTER TABLE tasks DROP COLUMN executor_handle;
