package sqlstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// ExtendLeases implements store.Store with one UPDATE per chunk, each row
// conditional on its attempt still executing.
func (s *Store) ExtendLeases(ctx context.Context, runs []store.RunRef, lease time.Duration) ([]store.RunRef, error) {
	until := task.Now().Add(lease)
	var lost []store.RunRef
	for start := 0; start < len(runs); start += maxBatch {
		chunk := runs[start:min(start+maxBatch, len(runs))]
		rows := make([]string, len(chunk))
		args := []any{until}
		for i, r := range chunk {
			rows[i] = fmt.Sprintf("(%s, %s)", s.d.cast(fmt.Sprintf("$%d", len(args)+1), "uuid"), s.d.cast(fmt.Sprintf("$%d", len(args)+2), "integer"))
			args = append(args, r.TaskID.String(), r.Attempt)
		}
		// The rows are locked in id order first, the order every other
		// multi-row writer (FinishRuns) uses, so the two cannot deadlock.
		q := `WITH v (id, attempt) AS (VALUES ` + strings.Join(rows, ", ") + `),
			owned AS MATERIALIZED (SELECT t.id FROM tasks t JOIN v ON t.id = v.id AND t.attempt = v.attempt
				WHERE t.status = 'executing' ORDER BY t.id` + s.d.lockOf("t") + `)
			UPDATE tasks SET lease_expires_at = ` + s.d.cast("$1", "timestamptz") + `
			WHERE id IN (SELECT id FROM owned)
			RETURNING id`
		res, err := s.w.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("extending leases: %w", err)
		}
		kept := map[uuid.UUID]bool{}
		for res.Next() {
			var id string
			if err := res.Scan(&id); err != nil {
				res.Close()
				return nil, fmt.Errorf("extending leases: %w", err)
			}
			u, _ := uuid.Parse(id)
			kept[u] = true
		}
		res.Close()
		if err := res.Err(); err != nil {
			return nil, fmt.Errorf("extending leases: %w", err)
		}
		for _, r := range chunk {
			if !kept[r.TaskID] {
				lost = append(lost, r)
			}
		}
	}
	return lost, nil
}

// lockWhere loads up to limit tasks matching where under a row lock that
// other maintainers skip (SKIP LOCKED on PostgreSQL), so every node can run
// maintenance at once without two handling the same task.
func (s *Store) lockWhere(ctx context.Context, tx *txn, where, order string, limit int, args ...any) ([]*task.Task, error) {
	args = append(args, limit)
	rows, err := tx.QueryContext(ctx, `SELECT `+baseColumns+` FROM tasks WHERE `+where+` ORDER BY `+order+
		fmt.Sprintf(` LIMIT $%d`, len(args))+s.d.skipLocked, args...)
	if err != nil {
		return nil, err
	}
	return scanTasks(rows)
}

// RescueExpired implements store.Store.
func (s *Store) RescueExpired(ctx context.Context, p store.RescueParams) (store.RescueResult, error) {
	if p.Limit <= 0 {
		p.Limit = 500
	}
	var (
		res store.RescueResult
	)
	err := s.inTx(ctx, func(tx *txn) error {
		res = store.RescueResult{}
		now := task.Now()
		expired, err := s.lockWhere(ctx, tx, `status = 'executing' AND lease_expires_at < $1`, `lease_expires_at`, p.Limit, now)
		if err != nil {
			return fmt.Errorf("finding expired leases: %w", err)
		}
		var ds []decided
		for _, t := range expired {
			def, _ := s.reg.Lookup(t.Type)
			resumable := def != nil && def.Resumable() && t.ServiceTaskID != ""
			lostMsg := fmt.Sprintf("worker %s stopped renewing its lease", t.ExecutorInstance)
			var (
				c      store.StatusChange
				resume bool
			)
			switch {
			case resumable && t.ResumeAttemptCount < p.MaxResumes:
				c, resume = store.StatusChange{TaskID: t.ID, To: task.StatusPending}, true
				res.Resumed++
			case !resumable && t.RetryCount+1 < t.MaxAttempts:
				c = store.StatusChange{TaskID: t.ID, To: task.StatusPending, CountRetry: true,
					Err: &task.Error{Message: lostMsg + "; re-queued", Category: task.CategoryLost}}
				res.Requeued++
			default:
				msg := lostMsg + "; no attempts left"
				if resumable {
					msg = fmt.Sprintf("%s; resumed %d times already", lostMsg, t.ResumeAttemptCount)
				}
				c = store.StatusChange{TaskID: t.ID, To: task.StatusFailed, CountRetry: true,
					Err: &task.Error{Message: msg, Category: task.CategoryLost}}
				res.Failed++
			}
			serviceID := t.ServiceTaskID
			d, err := decide(t, c, now)
			if err != nil {
				return err
			}
			if resume {
				t.IsResumed, t.ServiceTaskID = true, serviceID
				t.ResumeAttemptCount++
				t.LastResumeAttempt = &now
			}
			ds = append(ds, d)
		}
		_, _, err = s.writeTransitions(ctx, tx, ds, event.KindStatus, now)
		return err
	})
	if err != nil {
		return store.RescueResult{}, err
	}
	return res, nil
}

// FailStartTimeouts implements store.Store.
func (s *Store) FailStartTimeouts(ctx context.Context, limit int) (int, error) {
	if limit <= 0 {
		limit = 500
	}
	n := 0
	err := s.inTx(ctx, func(tx *txn) error {
		now := task.Now()
		overdue, err := s.lockWhere(ctx, tx, `status = 'pending' AND started_at IS NULL AND start_deadline < $1`, `start_deadline`, limit, now)
		if err != nil {
			return fmt.Errorf("finding overdue tasks: %w", err)
		}
		ds := make([]decided, 0, len(overdue))
		for _, t := range overdue {
			d, err := decide(t, store.StatusChange{TaskID: t.ID, To: task.StatusFailed, Err: &task.Error{
				Message:  fmt.Sprintf("not started within %d seconds of creation", t.StartTimeoutSeconds),
				Category: task.CategoryStartTimeout,
			}}, now)
			if err != nil {
				return err
			}
			ds = append(ds, d)
		}
		_, refused, err := s.writeTransitions(ctx, tx, ds, event.KindStatus, now)
		n = len(ds) - len(refused)
		return err
	})
	return n, err
}
