package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// capPicks is how many candidates claimCapped reads per task it may claim:
// candidates whose queue or executor fills up during the pick are passed
// over, and the ones after them claimed instead.
const capPicks = 4

// claimCapped claims under executor limits (p.ExecutorLimits), queue
// limits (queueLimits) and tenant limits (tenantLimits) at once. It
// serialises on each limited queue, executor and tenant (advisory transaction locks in a fixed order on PostgreSQL;
// SQLite's single writer does it already), counts what runs on each, leaves
// out the full ones in SQL, reads the due candidates in claim order, and
// picks each one whose queue, executor and tenant still have room.
func (s *Store) claimCapped(ctx context.Context, tx *txn, p store.ClaimParams, now time.Time, queueLimits, tenantLimits map[string]int) ([]*task.Task, error) {
	queues := make([]string, 0, len(queueLimits))
	for q := range queueLimits {
		if len(p.Queues) == 0 || slices.Contains(p.Queues, q) {
			queues = append(queues, q)
		}
	}
	sort.Strings(queues)
	executors := make([]string, 0, len(p.ExecutorLimits))
	for e, n := range p.ExecutorLimits {
		if n > 0 {
			executors = append(executors, e)
		}
	}
	sort.Strings(executors)
	tenants := make([]string, 0, len(tenantLimits))
	for t := range tenantLimits {
		tenants = append(tenants, t)
	}
	sort.Strings(tenants)
	if s.d.caps.SkipLocked {
		keys := make([]string, 0, len(queues)+len(executors)+len(tenants))
		for _, q := range queues {
			keys = append(keys, "compute.queue."+q)
		}
		for _, e := range executors {
			keys = append(keys, "compute.executor."+e)
		}
		for _, t := range tenants {
			keys = append(keys, "compute.tenant."+t)
		}
		for _, k := range keys { // queues, executors, then tenants, each sorted: one order for every claimer
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, k); err != nil {
				return nil, fmt.Errorf("locking %s: %w", k, err)
			}
		}
	}
	freeQ, err := s.freeCapacity(ctx, tx, "queue_name", "tasks_executing_queue", queues, queueLimits)
	if err != nil {
		return nil, err
	}
	freeE, err := s.freeCapacity(ctx, tx, "provider_type", "tasks_executing_provider", executors, p.ExecutorLimits)
	if err != nil {
		return nil, err
	}
	freeT, err := s.freeCapacity(ctx, tx, "origin_tenant_id", "tasks_executing_tenant", tenants, tenantLimits)
	if err != nil {
		return nil, err
	}
	args := []any{now, p.Limit * capPicks}
	filter, args := claimFilter(p, args, "$1")
	ps := params{vals: args}
	for q, n := range freeQ {
		if n <= 0 {
			filter += " AND queue_name <> " + ps.add(q)
		}
	}
	for e, n := range freeE {
		if n <= 0 {
			filter += " AND provider_type <> " + ps.add(e)
		}
	}
	for t, n := range freeT {
		if n <= 0 {
			filter += " AND origin_tenant_id <> " + ps.add(t)
		}
	}
	index, order := s.claimIndexOrder()
	rows, err := tx.QueryContext(ctx, `SELECT id, queue_name, provider_type, origin_tenant_id FROM tasks`+s.d.indexedBy(index)+`
		WHERE status = 'pending' AND run_at <= $1 AND `+startable("$1")+filter+`
		ORDER BY `+order+` LIMIT $2`+s.d.skipLocked, ps.vals...)
	if err != nil {
		return nil, fmt.Errorf("claiming tasks: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id, q, e, tn string
		if err := rows.Scan(&id, &q, &e, &tn); err != nil {
			rows.Close()
			return nil, fmt.Errorf("claiming tasks: %w", err)
		}
		nq, limitedQ := freeQ[q]
		ne, limitedE := freeE[e]
		nt, limitedT := freeT[tn]
		if (limitedQ && nq <= 0) || (limitedE && ne <= 0) || (limitedT && nt <= 0) {
			continue
		}
		if limitedT {
			freeT[tn]--
		}
		if limitedQ {
			freeQ[q]--
		}
		if limitedE {
			freeE[e]--
		}
		if ids = append(ids, id); len(ids) == p.Limit {
			break
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("claiming tasks: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	var up params
	up.add(p.Worker)
	up.add(now)
	up.add(now.Add(p.Lease))
	in := make([]string, len(ids))
	for i, id := range ids {
		in[i] = up.add(id)
	}
	upd, err := tx.QueryContext(ctx, `UPDATE tasks SET status = 'executing', executor_type = provider_type, executor_instance = $1,
		started_at = COALESCE(started_at, $2), updated_at = $2, lease_expires_at = $3, attempt = attempt + 1
		WHERE id IN (`+strings.Join(in, ", ")+`) AND status = 'pending'
		RETURNING `+baseColumns, up.vals...)
	if err != nil {
		return nil, fmt.Errorf("claiming tasks: %w", err)
	}
	tasks, err := scanTasks(upd)
	if err != nil {
		return nil, fmt.Errorf("claiming tasks: %w", err)
	}
	return tasks, nil
}

// freeCapacity returns, for each of names (values of column), its limit
// less the tasks executing there; index is the partial index of executing
// tasks on column.
func (s *Store) freeCapacity(ctx context.Context, tx *txn, column, index string, names []string, limits map[string]int) (map[string]int, error) {
	free := make(map[string]int, len(names))
	if len(names) == 0 {
		return free, nil
	}
	for _, n := range names {
		free[n] = limits[n]
	}
	var p params
	rows, err := tx.QueryContext(ctx, `SELECT `+column+`, COUNT(*) FROM tasks`+s.d.indexedBy(index)+` WHERE status = 'executing'
		AND `+inList(&p, column, names)+` GROUP BY `+column, p.vals...)
	if err != nil {
		return nil, fmt.Errorf("counting running tasks: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			name string
			n    int
		)
		if err := rows.Scan(&name, &n); err != nil {
			return nil, fmt.Errorf("counting running tasks: %w", err)
		}
		free[name] -= n
	}
	return free, rows.Err()
}
