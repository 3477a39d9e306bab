-- +goose Up
CREATE TABLE tasks (
    id                    UUID PRIMARY KEY,
    task_type             TEXT NOT NULL,
    status                TEXT NOT NULL CHECK (status IN ('pending', 'executing', 'completed', 'failed', 'cancelled')),
    progress              DOUBLE PRECISION NOT NULL DEFAULT 0,
    stage                 TEXT NOT NULL DEFAULT '',
    provider_type         TEXT NOT NULL,
    queue_name            TEXT NOT NULL,
    priority              INTEGER NOT NULL DEFAULT 0,
    origin_instance       TEXT NOT NULL DEFAULT '',
    origin_zone           TEXT NOT NULL DEFAULT '',
    origin_tenant_id      TEXT NOT NULL DEFAULT '',
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL,
    started_at            TIMESTAMPTZ,
    completed_at          TIMESTAMPTZ,
    run_at                TIMESTAMPTZ NOT NULL,
    executor_type         TEXT NOT NULL DEFAULT '',
    executor_instance     TEXT NOT NULL DEFAULT '',
    service_task_id       TEXT NOT NULL DEFAULT '',
    errors                JSONB NOT NULL DEFAULT '[]',
    error_message         TEXT NOT NULL DEFAULT '',
    error_category        TEXT NOT NULL DEFAULT '',
    retry_count           INTEGER NOT NULL DEFAULT 0,
    max_attempts          INTEGER NOT NULL,
    is_resumed            BOOLEAN NOT NULL DEFAULT FALSE,
    resume_attempt_count  INTEGER NOT NULL DEFAULT 0,
    last_resume_attempt   TIMESTAMPTZ,
    timeout_seconds       INTEGER NOT NULL,
    start_timeout_seconds INTEGER NOT NULL DEFAULT 0,
    webhook_url           TEXT NOT NULL DEFAULT '',
    webhook_events        JSONB NOT NULL DEFAULT '[]',
    result                JSONB,
    attempt               INTEGER NOT NULL DEFAULT 0,
    lease_expires_at      TIMESTAMPTZ,
    idempotency_key       TEXT,
    request_hash          TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX tasks_idempotency_key ON tasks (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasks_claim ON tasks (priority DESC, run_at, created_at) WHERE status = 'pending';
CREATE INDEX tasks_created ON tasks (created_at DESC, id DESC);
CREATE INDEX tasks_tenant_created ON tasks (origin_tenant_id, created_at DESC, id DESC);
CREATE INDEX tasks_lease ON tasks (lease_expires_at) WHERE status = 'executing';

CREATE TABLE task_events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id    UUID NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    task_type  TEXT NOT NULL,
    event_type TEXT NOT NULL,
    status     TEXT NOT NULL,
    tenant_id  TEXT NOT NULL DEFAULT '',
    body       JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX task_events_task ON task_events (task_id, id);

CREATE TABLE api_keys (
    id         UUID PRIMARY KEY,
    key_hash   TEXT NOT NULL UNIQUE,
    prefix     TEXT NOT NULL,
    name       TEXT NOT NULL DEFAULT '',
    tenant_id  TEXT NOT NULL DEFAULT '',
    is_admin   BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);

-- +goose Down
DROP TABLE api_keys;
DROP TABLE task_events;
DROP TABLE tasks;
