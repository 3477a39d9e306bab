-- +goose Up
-- A workflow's workflow_status_update events get webhook deliveries too,
-- under the workflow's id, which is no task's: the deliveries' foreign key
-- to tasks goes (DeleteTask deletes a task's deliveries itself). A workflow
-- may name its own webhook_url, as a task may.
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_task_id_fkey;
ALTER TABLE workflows ADD COLUMN webhook_url TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE workflows DROP COLUMN webhook_url;
DELETE FROM webhook_deliveries d WHERE NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = d.task_id);
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_task_id_fkey
    FOREIGN KEY (task_id) REFERENCES tasks (id) ON DELETE CASCADE;
