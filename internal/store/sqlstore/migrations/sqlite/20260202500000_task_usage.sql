-- +goose Up
-- What the services a task ran on reported spending, summed over its runs
-- (task.Usage): service seconds and language-model tokens; 0 when none
-- reported anything. Written with the run's outcome.
ALTER TABLE tasks ADD COLUMN provider_seconds REAL NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN input_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN output_tokens INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE tasks DROP COLUMN output_tokens;
ALTER TABLE tasks DROP COLUMN input_tokens;
ALTER TABLE tasks DROP COLUMN provider_seconds;
