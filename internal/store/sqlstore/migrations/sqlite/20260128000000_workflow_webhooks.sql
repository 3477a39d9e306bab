-- +goose NO TRANSACTION
-- +goose Up
-- A workflow's workflow_status_update events get webhook deliveries too,
-- under the workflow's id, which is no task's: the deliveries' foreign key
-- to tasks goes (DeleteTask deletes a task's deliveries itself). SQLite
-- cannot drop a constraint, so the table is rebuilt as in
-- 20260124000100_workflow_events, with foreign keys off so that dropping
-- the old table cascades nothing into webhook_attempts (whose foreign key
-- names the table, and so the rebuilt one). A workflow may name its own
-- webhook_url, as a task may.
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE webhook_deliveries_new (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id         INTEGER NOT NULL REFERENCES task_events (id) ON DELETE CASCADE,
    task_id          TEXT NOT NULL,
    url              TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed', 'stopped')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMP NOT NULL,
    last_status_code INTEGER,
    last_error       TEXT NOT NULL DEFAULT '',
    created_at       TIMESTAMP NOT NULL,
    updated_at       TIMESTAMP,
    delivered_at     TIMESTAMP,
    attempts_base    INTEGER NOT NULL DEFAULT 0,
    redelivered_at   TIMESTAMP,
    destination      TEXT NOT NULL DEFAULT '',
    claimed_until    TIMESTAMP,
    endpoint_id      TEXT
);
INSERT INTO webhook_deliveries_new (id, event_id, task_id, url, status, attempts, next_attempt_at, last_status_code,
        last_error, created_at, updated_at, delivered_at, attempts_base, redelivered_at, destination, claimed_until, endpoint_id)
    SELECT id, event_id, task_id, url, status, attempts, next_attempt_at, last_status_code,
        last_error, created_at, updated_at, delivered_at, attempts_base, redelivered_at, destination, claimed_until, endpoint_id
    FROM webhook_deliveries;
DROP TABLE webhook_deliveries;
ALTER TABLE webhook_deliveries_new RENAME TO webhook_deliveries;
CREATE INDEX webhook_deliveries_task ON webhook_deliveries (task_id, id);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);
CREATE INDEX webhook_deliveries_destination ON webhook_deliveries (destination, next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_in_flight ON webhook_deliveries (claimed_until, destination) WHERE claimed_until IS NOT NULL;
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id) WHERE endpoint_id IS NOT NULL;
CREATE INDEX webhook_deliveries_status ON webhook_deliveries (status, id);
ALTER TABLE workflows ADD COLUMN webhook_url TEXT NOT NULL DEFAULT '';
PRAGMA foreign_key_check;
COMMIT;
PRAGMA foreign_keys = ON;

-- +goose Down
SELECT 1;
