-- +goose Up
-- The W3C traceparent of the request that created the task ('' when
-- tracing was off), so the run's span joins the create request's trace.
ALTER TABLE tasks ADD COLUMN trace_parent TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE tasks DROP COLUMN trace_parent;
