package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// DeleteTask implements store.Store. The task's row is locked first, so a
// concurrent retry or claim either happens before (and the delete is
// refused) or finds no task. PostgreSQL's event log has no foreign key
// (20260104000000_event_log), so the events are deleted by hand; the
// deliveries and their attempts, and the type row, would cascade, and are
// deleted by hand too so that neither database depends on it.
func (s *Store) DeleteTask(ctx context.Context, id uuid.UUID, scope store.Scope) (*task.Task, error) {
	var deleted *task.Task
	err := s.inTx(ctx, func(tx *txn) error {
		tasks, err := s.lockTasks(ctx, tx, []uuid.UUID{id}, scope)
		if err != nil {
			return err
		}
		t, ok := tasks[id]
		if !ok {
			return task.ErrNotFound
		}
		if !t.Status.Terminal() {
			return fmt.Errorf("%w: the task is %s", store.ErrNotFinished, t.Status)
		}
		stmts := []string{
			`DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM webhook_deliveries WHERE task_id = $1)`,
			`DELETE FROM webhook_deliveries WHERE task_id = $1`,
			`DELETE FROM task_events WHERE task_id = $1`,
		}
		if def, ok := s.reg.Lookup(t.Type); ok {
			stmts = append(stmts, `DELETE FROM `+quote(def.Table)+` WHERE id = $1`)
		}
		stmts = append(stmts, `DELETE FROM tasks WHERE id = $1`)
		for _, q := range stmts {
			if _, err := tx.ExecContext(ctx, q, id.String()); err != nil {
				return fmt.Errorf("deleting task %s: %w", id, err)
			}
		}
		deleted = t
		return nil
	})
	if err != nil {
		return nil, err
	}
	return deleted, nil
}

// ArtifactsToExpire implements store.Store, over the partial index
// tasks_artifacts_kept.
func (s *Store) ArtifactsToExpire(ctx context.Context, before time.Time, limit int) ([]uuid.UUID, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.lists.QueryContext(ctx, `SELECT id FROM tasks
		WHERE completed_at IS NOT NULL AND (artifacts_expired_at IS NULL OR artifacts_expired_at < completed_at)
		AND completed_at < $1 ORDER BY completed_at, id LIMIT $2`, dbTime(before), limit)
	if err != nil {
		return nil, fmt.Errorf("listing tasks whose artifacts expire: %w", err)
	}
	defer rows.Close()
	var ids []uuid.UUID
	for rows.Next() {
		var raw string
		if err := rows.Scan(&raw); err != nil {
			return nil, fmt.Errorf("listing tasks whose artifacts expire: %w", err)
		}
		id, err := uuid.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("listing tasks whose artifacts expire: task id %q: %w", raw, err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing tasks whose artifacts expire: %w", err)
	}
	return ids, nil
}

// MarkArtifactsExpired implements store.Store.
func (s *Store) MarkArtifactsExpired(ctx context.Context, ids []uuid.UUID, before, at time.Time) error {
	for start := 0; start < len(ids); start += maxBatch {
		chunk := ids[start:min(start+maxBatch, len(ids))]
		var p params
		q := `UPDATE tasks SET artifacts_expired_at = ` + p.add(dbTime(at)) + ` WHERE completed_at IS NOT NULL AND completed_at < ` +
			p.add(dbTime(before)) + ` AND id IN (` + uuidList(&p, chunk) + `)`
		if _, err := s.w.ExecContext(ctx, q, p.vals...); err != nil {
			return fmt.Errorf("marking expired artifacts: %w", err)
		}
	}
	return nil
}
