-- +goose Up
-- The event log is append-only and written in the same transaction as the
-- task change it records, under that task's row lock, so the foreign key
-- guarded nothing the writer does not already guarantee, and its trigger
-- (one lookup and key-share lock per event) was a third of an event's
-- cost. Bodies are stored as json, not jsonb: they are only ever read back
-- whole, json keeps the exact bytes that were written and skips jsonb's
-- conversion. Tasks are never deleted by the server; whoever deletes them
-- by hand deletes their events too.
ALTER TABLE task_events DROP CONSTRAINT task_events_task_id_fkey;
ALTER TABLE task_events ALTER COLUMN body TYPE JSON USING body::json;

-- +goose Down
ALTER TABLE task_events ALTER COLUMN body TYPE JSONB USING body::jsonb;
ALTER TABLE task_events ADD CONSTRAINT task_events_task_id_fkey
    FOREIGN KEY (task_id) REFERENCES tasks (id) ON DELETE CASCADE;
