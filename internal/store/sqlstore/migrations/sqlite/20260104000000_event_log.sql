-- +goose Up
-- PostgreSQL drops the event log's foreign key and stores bodies as json
-- at this version. SQLite keeps both: its body column is TEXT already, a
-- foreign key check is one in-process index lookup, and removing it would
-- mean rebuilding task_events (and, with foreign keys on, cascading into
-- webhook_deliveries). The version exists on both databases so that their
-- schema histories stay aligned.
SELECT 1;

-- +goose Down
SELECT 1;
