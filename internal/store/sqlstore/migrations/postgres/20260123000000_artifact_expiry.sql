-- +goose Up
-- When artifact retention (COMPUTE_ARTIFACT_RETENTION) last removed the
-- task's artifacts. A task finished again after that (a retry) has
-- completed_at past it, so its new artifacts expire in their turn. The
-- partial index holds only the finished tasks whose artifacts are still
-- kept, oldest first: what a retention pass reads.
ALTER TABLE tasks ADD COLUMN artifacts_expired_at TIMESTAMPTZ;
CREATE INDEX tasks_artifacts_kept ON tasks (completed_at, id)
    WHERE completed_at IS NOT NULL AND (artifacts_expired_at IS NULL OR artifacts_expired_at < completed_at);

-- +goose Down
DROP INDEX tasks_artifacts_kept;
ALTER TABLE tasks DROP COLUMN artifacts_expired_at;
