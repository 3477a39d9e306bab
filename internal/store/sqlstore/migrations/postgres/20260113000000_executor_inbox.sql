-- +goose Up
-- The inboxes of executor jobs whose service answers only by webhook (a
-- Cog container), so that a webhook received by any process reaches the
-- run waiting in any other, across restarts of either. A row per job,
-- named by the sha256 of its callback token (the token itself is never
-- stored), with the digest of the bearer token its webhooks must carry.
-- body is the last message; once final is set the row takes no more (the
-- first terminal state wins). seq counts the messages taken, so a reader
-- sees a new one. A row expires at expires_at, refreshed while its job
-- waits; expired rows are deleted when another inbox is opened.
CREATE TABLE IF NOT EXISTS executor_inbox (
    token_hash  TEXT      PRIMARY KEY,
    auth_hash   TEXT      NOT NULL DEFAULT '',
    seq         BIGINT    NOT NULL DEFAULT 0,
    final       BOOLEAN   NOT NULL DEFAULT FALSE,
    body        BYTEA,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS executor_inbox_expires ON executor_inbox (expires_at);

-- +goose Down
DROP TABLE executor_inbox;
