-- +goose Up
-- The event log has had no foreign key to tasks here since
-- 20260104000000; SQLite drops its own at this version.
SELECT 1;

-- +goose Down
SELECT 1;
