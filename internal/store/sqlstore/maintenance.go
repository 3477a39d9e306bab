package sqlstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

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
		var p params
		untilP := p.add(until)
		for i, r := range chunk {
			rows[i] = "(" + s.d.cast(p.add(r.TaskID.String()), "uuid") + ", " + s.d.cast(p.add(r.Attempt), "integer") + ")"
		}
		// The rows are locked in id order first, the order every other
		// multi-row writer (FinishRuns) uses, so the two cannot deadlock.
		q := `WITH v (id, attempt) AS (VALUES ` + strings.Join(rows, ", ") + `),
			owned AS MATERIALIZED (SELECT t.id FROM tasks t JOIN v ON t.id = v.id AND t.attempt = v.attempt
				WHERE t.status = 'executing' ORDER BY t.id` + s.d.lockOf("t") + `)
			UPDATE tasks SET lease_expires_at = ` + s.d.cast(untilP, "timestamptz") + `
			WHERE id IN (SELECT id FROM owned)
			RETURNING id`
		res, err := s.w.QueryContext(ctx, q, p.vals...)
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

// The sweeps' conditions and their indexes (lockWhere).
const (
	byInstance         = `status = 'executing' AND executor_instance = $1`
	leaseExpired       = `status = 'executing' AND lease_expires_at < $1`
	leaseIndex         = "tasks_lease"
	startDeadlineIndex = "tasks_start_deadline"
)

// lockWhereSQL is lockWhere's SELECT; limit is its placeholder.
func (d dialect) lockWhereSQL(index, where, order, limit string) string {
	return `SELECT ` + baseColumns + ` FROM tasks` + d.indexedBy(index) + ` WHERE ` + where + ` ORDER BY ` + order +
		` LIMIT ` + limit + d.skipLocked
}

// lockWhere loads up to limit tasks matching where, through index (see
// indexedBy), under a row lock that
// other maintainers skip (SKIP LOCKED on PostgreSQL), so every node can run
// maintenance at once without two handling the same task.
func (s *Store) lockWhere(ctx context.Context, tx *txn, index, where, order string, limit int, args ...any) ([]*task.Task, error) {
	p := params{vals: args}
	rows, err := tx.QueryContext(ctx, s.d.lockWhereSQL(index, where, order, p.add(limit)), p.vals...)
	if err != nil {
		return nil, err
	}
	return scanTasks(rows)
}

// RescueRuns implements store.Store.
func (s *Store) RescueRuns(ctx context.Context, p store.RescueParams) ([]*task.Task, error) {
	if p.Limit <= 0 {
		p.Limit = 500
	}
	if p.Decide == nil {
		return nil, fmt.Errorf("rescuing runs: no Decide function")
	}
	var out []*task.Task
	err := s.inTx(ctx, func(tx *txn) error {
		out = out[:0]
		now := task.Now()
		if !p.StartBy.IsZero() && now.After(p.StartBy) {
			return store.ErrRescueLate
		}
		var (
			lost []*task.Task
			err  error
		)
		if p.Instance != "" {
			lost, err = s.lockWhere(ctx, tx, leaseIndex, byInstance, `id`, p.Limit, p.Instance)
		} else {
			lost, err = s.lockWhere(ctx, tx, leaseIndex, leaseExpired, `lease_expires_at`, p.Limit, now)
		}
		if err != nil {
			return fmt.Errorf("finding lost runs: %w", err)
		}
		changes := make([]task.Change, len(lost))
		for i, t := range lost {
			changes[i] = p.Decide(t).Change
			changes[i].Attempt = t.Attempt
		}
		out, _, err = s.changeLocked(ctx, tx, lost, changes, now)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// FailStartTimeouts implements store.Store.
func (s *Store) FailStartTimeouts(ctx context.Context, limit int) (int, error) {
	n := 0
	err := s.inTx(ctx, func(tx *txn) error {
		var err error
		n, err = s.failStartTimeouts(ctx, tx, task.Now(), limit)
		return err
	})
	return n, err
}

// overdue is the condition of a pending task that never started and whose
// start deadline has passed; $1 is now.
const overdue = `status = 'pending' AND started_at IS NULL AND start_deadline < $1`

// failStartTimeouts fails up to limit overdue tasks in tx with category
// start_timeout, and their events, and returns how many it failed.
func (s *Store) failStartTimeouts(ctx context.Context, tx *txn, now time.Time, limit int) (int, error) {
	if limit <= 0 {
		limit = 500
	}
	tasks, err := s.lockWhere(ctx, tx, startDeadlineIndex, overdue, `start_deadline`, limit, now)
	if err != nil {
		return 0, fmt.Errorf("finding overdue tasks: %w", err)
	}
	changes := make([]task.Change, len(tasks))
	for i, t := range tasks {
		changes[i] = task.Change{To: task.StatusFailed, Err: &task.Error{
			Message:  fmt.Sprintf("not started within %d seconds of creation", t.StartTimeoutSeconds),
			Category: task.CategoryStartTimeout,
		}}
	}
	failed, _, err := s.changeLocked(ctx, tx, tasks, changes, now)
	return len(failed), err
}
