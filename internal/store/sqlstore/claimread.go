package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// claimReadFirst is ClaimTasks for a single-writer store (SQLite) without
// queue limits. The due tasks and their type rows are read from the read
// pool, outside the write transaction, which then only writes: one
// conditional UPDATE per task, prepared once, and the events. A task is
// claimed only if it is still pending with the updated_at that was read
// (compared as the stored text), so one that was patched, cancelled or
// claimed by another process in between is skipped, and looked at again
// by the next claim. The writer, which every write of the server waits
// for, is held for the writes alone.
func (s *Store) claimReadFirst(ctx context.Context, p store.ClaimParams) ([]*store.Record, error) {
	c, err := s.readClaim(ctx, p)
	if err != nil || (len(c.recs) == 0 && c.overdue == 0) {
		return nil, err
	}
	return s.writeClaim(ctx, p, &c)
}

// claiming is a read-first claim between its phases: what readClaim read,
// which writeClaim claims.
type claiming struct {
	now time.Time
	// recs are the due tasks read, with their type rows, and versions
	// their updated_at as stored text.
	recs     []*store.Record
	versions []string
	// overdue counts the tasks read whose start deadline has passed:
	// they are not claimed but failed, in the claim's transaction.
	overdue int
}

// claimReadSQL is the read-first claim's SELECT of the due tasks in claim
// order ($1 now, $2 the limit), with claimFilter's extra conditions.
func (s *Store) claimReadSQL(filter string) string {
	index, order := s.claimIndexOrder()
	return `SELECT ` + baseColumns + `, updated_at || '', ` + startable("$1") + ` FROM tasks` + s.d.indexedBy(index) + `
		WHERE status = 'pending' AND run_at <= $1` + filter + `
		ORDER BY ` + order + ` LIMIT $2`
}

// readClaim is the read-first claim's first phase, from the read pool:
// the due tasks, in claim order, and their type rows.
func (s *Store) readClaim(ctx context.Context, p store.ClaimParams) (claiming, error) {
	now := task.Now()
	filter, args := claimFilter(p, []any{now, p.Limit}, "$1")
	rows, err := s.r.QueryContext(ctx, s.claimReadSQL(filter), args...)
	if err != nil {
		return claiming{}, fmt.Errorf("claiming tasks: %w", err)
	}
	var (
		tasks    []*task.Task
		versions []string
		overdue  int
	)
	for rows.Next() {
		var (
			version string
			ok      bool
		)
		t, err := scanTask(rows, &version, &ok)
		if err != nil {
			rows.Close()
			return claiming{}, fmt.Errorf("claiming tasks: %w", err)
		}
		if !ok {
			overdue++
			continue
		}
		if versions == nil {
			// They go to the write phase: sized once, for the most rows
			// the query returns.
			tasks, versions = make([]*task.Task, 0, min(p.Limit, maxBatch)), make([]string, 0, min(p.Limit, maxBatch))
		}
		tasks, versions = append(tasks, t), append(versions, version)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return claiming{}, fmt.Errorf("claiming tasks: %w", err)
	}
	if len(tasks) == 0 && overdue == 0 {
		return claiming{}, nil
	}
	recs, err := s.attachFields(ctx, s.r, tasks)
	if err != nil {
		return claiming{}, err
	}
	return claiming{now: now, recs: recs, versions: versions, overdue: overdue}, nil
}

// writeClaim is the read-first claim's second phase: in the write
// transaction, it fails the overdue tasks and claims each task read that
// is still pending with the updated_at that was read.
func (s *Store) writeClaim(ctx context.Context, p store.ClaimParams, c *claiming) ([]*store.Record, error) {
	now, recs, versions, overdue := c.now, c.recs, c.versions, c.overdue
	// What the UPDATE will make of each task, and its event, are known
	// before it runs: both are prepared outside the transaction.
	lease := dbTime(now.Add(p.Lease))
	evs := make([]event.Event, len(recs))
	for i, rec := range recs {
		t := rec.Task
		t.Status, t.ExecutorInstance, t.UpdatedAt, t.Attempt = task.StatusExecuting, p.Worker, dbTime(now), t.Attempt+1
		t.ExecutorType = t.ProviderType
		if t.StartedAt == nil {
			started := dbTime(now)
			t.StartedAt = &started
		}
		t.LeaseExpiresAt = &lease
		evs[i] = event.New(t, event.KindStatus, now)
	}
	var claimed []*store.Record
	err := s.inTx(ctx, func(tx *txn) error {
		claimed = claimed[:0]
		st, err := tx.PrepareContext(ctx, `UPDATE tasks SET status = 'executing', executor_type = provider_type, executor_instance = ?,
			started_at = COALESCE(started_at, ?), updated_at = ?, lease_expires_at = ?, attempt = attempt + 1
			WHERE id = ? AND status = 'pending' AND updated_at = ?`)
		if err != nil {
			return fmt.Errorf("claiming tasks: %w", err)
		}
		defer st.Close()
		if overdue > 0 {
			if _, err := s.failStartTimeouts(ctx, tx, now, overdue); err != nil {
				return err
			}
		}
		written := make([]event.Event, 0, len(recs))
		for i, rec := range recs {
			res, err := st.ExecContext(ctx, p.Worker, dbTime(now), dbTime(now), lease, rec.Task.ID.String(), versions[i])
			if err != nil {
				return fmt.Errorf("claiming tasks: %w", err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("claiming tasks: %w", err)
			}
			if n != 1 {
				continue
			}
			claimed, written = append(claimed, rec), append(written, evs[i])
		}
		_, err = s.insertEvents(ctx, tx, written)
		return err
	})
	if err != nil {
		return nil, err
	}
	return claimed, nil
}
