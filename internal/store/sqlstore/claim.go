package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// ClaimTasks implements store.Store. Without queue or executor limits it is one
// statement on PostgreSQL; on SQLite it is claimReadFirst. With limits, the claim serialises on each limited queue
// (advisory transaction locks on PostgreSQL; SQLite's single writer does it
// already), counts what runs there, and claims at most the free capacity of
// each limited queue before filling the rest from unlimited queues. With
// executor or tenant limits (store.Scheduling), claimCapped does the same
// for queues, executors and tenants together. No claim takes a task whose
// executor is paused (store.Gates) or whose queue or executor is held
// (store.Scheduling). Claims take due tasks in the fair order between
// tenants (claimIndexOrder).
func (s *Store) ClaimTasks(ctx context.Context, p store.ClaimParams) ([]*store.Record, error) {
	if p.Limit <= 0 {
		return nil, nil
	}
	limits, err := s.cachedQueueLimits(ctx)
	if err != nil {
		return nil, err
	}
	tenants, err := s.cachedTenantLimits(ctx)
	if err != nil {
		return nil, err
	}
	capped := len(p.ExecutorLimits) > 0 || len(tenants) > 0
	if !s.d.caps.SkipLocked && len(limits) == 0 && !capped {
		return s.claimReadFirst(ctx, p)
	}
	now := task.Now()
	var recs []*store.Record
	err = s.inTx(ctx, func(tx *txn) error {
		var tasks []*task.Task
		if capped {
			got, err := s.claimCapped(ctx, tx, p, now, limits, tenants)
			if err != nil {
				return err
			}
			tasks = got
		} else if len(limits) == 0 {
			got, err := s.claimWhere(ctx, tx, p, now, p.Limit, nil)
			if err != nil {
				return err
			}
			tasks = got
		} else {
			got, err := s.claimLimited(ctx, tx, p, now, limits)
			if err != nil {
				return err
			}
			tasks = got
		}
		// The claim skipped the tasks whose start deadline has passed;
		// they fail here, in its transaction, after its row locks.
		if _, err := s.failStartTimeouts(ctx, tx, now, p.Limit); err != nil {
			return err
		}
		if len(tasks) == 0 {
			return nil
		}
		// RETURNING has no order: return the tasks in claim order.
		slices.SortFunc(tasks, claimOrder)
		// The type rows first: the events come last, so the event-order
		// lock is held as briefly as possible.
		if recs, err = s.attachFields(ctx, tx, tasks); err != nil {
			return err
		}
		evs := make([]event.Event, len(tasks))
		for i, t := range tasks {
			evs[i] = event.New(t, event.KindStatus, now)
		}
		_, err := s.insertEvents(ctx, tx, evs)
		return err
	})
	if err != nil {
		return nil, err
	}
	return recs, nil
}

// claimLimited claims under queue limits.
func (s *Store) claimLimited(ctx context.Context, tx *txn, p store.ClaimParams, now time.Time, limits map[string]int) ([]*task.Task, error) {
	limited := make([]string, 0, len(limits))
	for q := range limits {
		if len(p.Queues) == 0 || slices.Contains(p.Queues, q) {
			limited = append(limited, q)
		}
	}
	sort.Strings(limited) // a fixed lock order: no deadlocks between claimers
	if s.d.caps.SkipLocked {
		for _, q := range limited {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, "compute.queue."+q); err != nil {
				return nil, fmt.Errorf("locking queue %s: %w", q, err)
			}
		}
	}
	free, err := s.freeCapacity(ctx, tx, "queue_name", "tasks_executing_queue", limited, limits)
	if err != nil {
		return nil, err
	}
	var out []*task.Task
	left := p.Limit
	for _, q := range limited {
		n := min(free[q], left)
		if n <= 0 {
			continue
		}
		got, err := s.claimWhere(ctx, tx, p, now, n, func(ps *params) string { return " AND queue_name = " + ps.add(q) })
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
		left -= len(got)
	}
	if left > 0 {
		got, err := s.claimWhere(ctx, tx, p, now, left, func(ps *params) string {
			filter := ""
			for q := range limits {
				filter += " AND queue_name <> " + ps.add(q)
			}
			return filter
		})
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}

// claimWhere claims up to limit due tasks matching p and the extra
// conditions that extra, when not nil, writes (binding their values).
func (s *Store) claimWhere(ctx context.Context, tx *txn, p store.ClaimParams, now time.Time, limit int, extra func(*params) string) ([]*task.Task, error) {
	args := []any{p.Worker, now, now.Add(p.Lease), limit}
	filter, args := claimFilter(p, args, "$2")
	if extra != nil {
		ps := params{vals: args}
		filter += extra(&ps)
		args = ps.vals
	}
	// The rows to claim are picked once, in a materialised CTE. As a plain
	// IN (subquery), PostgreSQL may rescan the subquery for each row it
	// updates; a rescan skips the rows this statement has already updated
	// and locks the next ones, so the claim took every due task, not Limit.
	index, order := s.claimIndexOrder()
	q := `WITH picked AS MATERIALIZED (SELECT id FROM tasks` + s.d.indexedBy(index) + ` WHERE status = 'pending' AND run_at <= $2 AND ` + startable("$2") + filter + `
			ORDER BY ` + order + ` LIMIT $4` + s.d.skipLocked + `)
		UPDATE tasks SET status = 'executing', executor_type = provider_type, executor_instance = $1, started_at = COALESCE(started_at, $2),
		updated_at = $2, lease_expires_at = $3, attempt = attempt + 1
		WHERE id IN (SELECT id FROM picked) AND status = 'pending'
		RETURNING ` + baseColumns
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("claiming tasks: %w", err)
	}
	tasks, err := scanTasks(rows)
	if err != nil {
		return nil, fmt.Errorf("claiming tasks: %w", err)
	}
	return tasks, nil
}

// startable is the condition of a pending task a claim may start at now:
// one that started before (a retry) or whose start deadline, if any, has
// not passed.
func startable(now string) string {
	return `(start_deadline IS NULL OR started_at IS NOT NULL OR start_deadline >= ` + now + `)`
}

// claimFilter appends the conditions of p's queue and type lists, and
// that the task's executor is not paused at now (a placeholder) and that
// neither its queue nor its executor is held (store.Scheduling), to a
// claim's WHERE clause, numbering their parameters after args.
func claimFilter(p store.ClaimParams, args []any, now string) (string, []any) {
	ps := params{vals: args}
	filter := notPaused(now) + notHeld
	for _, c := range []string{inList(&ps, "queue_name", p.Queues), inList(&ps, "task_type", p.Types)} {
		if c != "" {
			filter += " AND " + c
		}
	}
	return filter, ps.vals
}

// queueLimitTTL is how long a process trusts its copy of the queue limits.
const queueLimitTTL = time.Second

func (s *Store) cachedQueueLimits(ctx context.Context) (map[string]int, error) {
	s.limitsMu.Lock()
	defer s.limitsMu.Unlock()
	if time.Since(s.limitsAt) < queueLimitTTL {
		return s.limits, nil
	}
	l, err := s.QueueLimits(ctx)
	if err != nil {
		return nil, err
	}
	s.limits, s.limitsAt = l, time.Now()
	return l, nil
}

// SetQueueLimit implements store.Store.
func (s *Store) SetQueueLimit(ctx context.Context, queue string, n int) error {
	var err error
	if n <= 0 {
		_, err = s.w.ExecContext(ctx, `DELETE FROM queue_limits WHERE queue_name = $1`, queue)
	} else {
		_, err = s.w.ExecContext(ctx, `INSERT INTO queue_limits (queue_name, max_concurrency, updated_at) VALUES ($1, $2, $3)
			ON CONFLICT (queue_name) DO UPDATE SET max_concurrency = excluded.max_concurrency, updated_at = excluded.updated_at`,
			queue, n, task.Now())
	}
	if err != nil {
		return fmt.Errorf("setting the limit of queue %s: %w", queue, err)
	}
	s.limitsMu.Lock()
	s.limitsAt = time.Time{}
	s.limitsMu.Unlock()
	return nil
}

// QueueLimits implements store.Store.
func (s *Store) QueueLimits(ctx context.Context) (map[string]int, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT queue_name, max_concurrency FROM queue_limits`)
	if err != nil {
		return nil, fmt.Errorf("reading queue limits: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var (
			q string
			n int
		)
		if err := rows.Scan(&q, &n); err != nil {
			return nil, err
		}
		out[q] = n
	}
	return out, rows.Err()
}
