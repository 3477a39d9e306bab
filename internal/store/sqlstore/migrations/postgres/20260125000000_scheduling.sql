-- +goose Up
-- Fair share between tenants: a pending task's place in its tenant's
-- round (fair_seq, a virtual time). The claim takes tasks in the order of
-- priority, then fair_seq, so within a priority the tenants' tasks
-- interleave: the k-th waiting task of every tenant before the (k+1)-th of
-- any. A task's fair_seq is set at create: one after its tenant's last
-- pending task, and no earlier than the task at the head of the claim order.
ALTER TABLE tasks ADD COLUMN fair_seq BIGINT NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS tasks_fair ON tasks (priority DESC, fair_seq, run_at, created_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS tasks_tenant_fair ON tasks (origin_tenant_id, fair_seq) WHERE status = 'pending';
-- The running tasks of a tenant are counted at every claim when tenants
-- have concurrency limits.
CREATE INDEX IF NOT EXISTS tasks_executing_tenant ON tasks (origin_tenant_id) WHERE status = 'executing';
-- Global concurrency limits per tenant (origin_tenant_id), like queue_limits.
CREATE TABLE IF NOT EXISTS tenant_limits (
    tenant_id       TEXT PRIMARY KEY,
    max_concurrency INTEGER NOT NULL CHECK (max_concurrency > 0),
    updated_at      TIMESTAMPTZ NOT NULL
);
-- Operators' holds: a held queue or executor starts no new task, a held
-- (drained) executor server gets no new job; running ones finish. kind is
-- queue, executor or server (a server's URL). Deleting the row resumes.
CREATE TABLE IF NOT EXISTS scheduling_holds (
    kind     TEXT NOT NULL,
    name     TEXT NOT NULL,
    reason   TEXT NOT NULL DEFAULT '',
    held_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (kind, name)
);

-- +goose Down
DROP TABLE scheduling_holds;
DROP TABLE tenant_limits;
DROP INDEX tasks_executing_tenant;
DROP INDEX tasks_tenant_fair;
DROP INDEX tasks_fair;
ALTER TABLE tasks DROP COLUMN fair_seq;
