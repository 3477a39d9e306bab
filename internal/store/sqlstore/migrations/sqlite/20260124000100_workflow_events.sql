-- +goose NO TRANSACTION
-- +goose Up
-- A workflow's events live in the event log under the workflow's id,
-- which is no task's: SQLite drops the event log's foreign key to tasks,
-- as PostgreSQL did at 20260104000000 (DeleteTask deletes a task's events
-- itself). SQLite cannot drop a constraint, so the table is rebuilt
-- (https://sqlite.org/lang_altertable.html, "otherwise" procedure) with
-- foreign keys off, so that dropping the old table cascades nothing.
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE task_events_new (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id    TEXT NOT NULL,
    task_type  TEXT NOT NULL,
    event_type TEXT NOT NULL,
    status     TEXT NOT NULL,
    tenant_id  TEXT NOT NULL DEFAULT '',
    body       TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
INSERT INTO task_events_new (id, task_id, task_type, event_type, status, tenant_id, body, created_at)
    SELECT id, task_id, task_type, event_type, status, tenant_id, body, created_at FROM task_events;
DROP TABLE task_events;
ALTER TABLE task_events_new RENAME TO task_events;
CREATE INDEX task_events_task ON task_events (task_id, id);
CREATE INDEX task_events_tenant ON task_events (tenant_id, id);
CREATE INDEX task_events_type ON task_events (task_type, id);
CREATE INDEX task_events_status ON task_events (status, id);
PRAGMA foreign_key_check;
COMMIT;
PRAGMA foreign_keys = ON;

-- +goose Down
SELECT 1;
