-- +goose Up
CREATE TABLE workflows (
    id           UUID PRIMARY KEY,
    tenant_id    TEXT NOT NULL DEFAULT '',
    status       TEXT NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    error        TEXT NOT NULL DEFAULT '',
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    started_at   TIMESTAMPTZ,
    completed_at TIMESTAMPTZ
);
CREATE INDEX workflows_tenant ON workflows (tenant_id, id);

-- A step's task_id is set once, in the transaction that creates the task
-- (the one that completes the step's last dependency); UNIQUE also finds
-- a finished task's step.
CREATE TABLE workflow_steps (
    workflow_id UUID NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    step_id     TEXT NOT NULL,
    position    INTEGER NOT NULL,
    depends_on  TEXT NOT NULL DEFAULT '[]',
    body        TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending',
    error       TEXT NOT NULL DEFAULT '',
    task_id     UUID UNIQUE,
    PRIMARY KEY (workflow_id, step_id)
);

-- +goose Down
DROP TABLE workflow_steps;
DROP TABLE workflows;
