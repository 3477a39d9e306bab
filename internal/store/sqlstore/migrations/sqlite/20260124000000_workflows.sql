-- +goose Up
CREATE TABLE workflows (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL DEFAULT '',
    status       TEXT NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    error        TEXT NOT NULL DEFAULT '',
    created_at   TIMESTAMP NOT NULL,
    updated_at   TIMESTAMP NOT NULL,
    started_at   TIMESTAMP,
    completed_at TIMESTAMP
);
CREATE INDEX workflows_tenant ON workflows (tenant_id, id);

CREATE TABLE workflow_steps (
    workflow_id TEXT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    step_id     TEXT NOT NULL,
    position    INTEGER NOT NULL,
    depends_on  TEXT NOT NULL DEFAULT '[]',
    body        TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending',
    error       TEXT NOT NULL DEFAULT '',
    task_id     TEXT UNIQUE,
    PRIMARY KEY (workflow_id, step_id)
);

-- +goose Down
DROP TABLE workflow_steps;
DROP TABLE workflows;
