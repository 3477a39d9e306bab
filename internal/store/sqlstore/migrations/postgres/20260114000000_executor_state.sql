-- +goose Up
-- What every worker process knows of an executor beyond its config: until
-- when its tasks are not claimed (paused_until: the service answered 429,
-- or its start rate is used up), and the token bucket of its start rate
-- (tokens, as of tokens_at). A row exists once an executor was paused or
-- rate limited.
CREATE TABLE IF NOT EXISTS executor_state (
    executor      TEXT             NOT NULL PRIMARY KEY,
    paused_until  TIMESTAMPTZ,
    pause_reason  TEXT             NOT NULL DEFAULT '',
    tokens        DOUBLE PRECISION NOT NULL DEFAULT 0,
    tokens_at     TIMESTAMPTZ
);
-- The running tasks of an executor are counted at every claim when it
-- has a concurrency limit.
CREATE INDEX IF NOT EXISTS tasks_executing_provider ON tasks (provider_type) WHERE status = 'executing';

-- +goose Down
DROP INDEX tasks_executing_provider;
DROP TABLE executor_state;
