package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// InTx exposes inTx to the package's external tests.
func (s *Store) InTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.inTx(ctx, func(tx *txn) error { return fn(tx.Tx) })
}

// ClaimReadFirstAround is SQLite's claim (claimReadFirst, which ClaimTasks
// uses without queue limits) with between called after its read phase and
// before its write transaction. It fails on a store that claims otherwise.
func (s *Store) ClaimReadFirstAround(ctx context.Context, p store.ClaimParams, between func()) ([]*store.Record, error) {
	if s.d.caps.SkipLocked {
		return nil, errors.New("this store claims in one statement, not read first")
	}
	c, err := s.readClaim(ctx, p)
	if err != nil {
		return nil, err
	}
	between()
	if len(c.recs) == 0 && c.overdue == 0 {
		return nil, nil
	}
	return s.writeClaim(ctx, p, &c)
}

// EventOrderLock is the advisory lock key of the event-order lock.
const EventOrderLock = eventOrderLock

// MigrationLockID exposes migrationLockID to the package's external tests.
var MigrationLockID = migrationLockID

// DB is the writer's database handle, for tests that seed rows directly.
func (s *Store) DB() *sql.DB { return s.w.DB }

// EventsPlan is the query plan of ListEvents' query for f.
func (s *Store) EventsPlan(ctx context.Context, f store.EventFilter) (string, error) {
	q, args := eventsQuery(f)
	return s.plan(ctx, q, args)
}

// ListPlan is the query plan of ListTasks' query for f.
func (s *Store) ListPlan(ctx context.Context, f store.ListFilter) (string, error) {
	q, args, _, err := listQuery(f)
	if err != nil {
		return "", err
	}
	return s.plan(ctx, q, args)
}

// plan explains q: PostgreSQL's EXPLAIN, SQLite's EXPLAIN QUERY PLAN
// (its detail column), one line per node.
func (s *Store) plan(ctx context.Context, q string, args []any) (string, error) {
	explain := "EXPLAIN "
	if s.d.name == DialectSQLite {
		explain = "EXPLAIN QUERY PLAN "
	}
	rows, err := s.lists.QueryContext(ctx, explain+q, args...)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return "", err
	}
	var lines []string
	for rows.Next() {
		dest := make([]any, len(cols))
		for i := range dest {
			dest[i] = new(any)
		}
		if err := rows.Scan(dest...); err != nil {
			return "", err
		}
		lines = append(lines, fmt.Sprint(*dest[len(dest)-1].(*any)))
	}
	return strings.Join(lines, "\n"), rows.Err()
}

// PoolStats are the writers' and the list pool's connection statistics.
func (s *Store) PoolStats() (writers, lists sql.DBStats) { return s.w.Stats(), s.lists.Stats() }

// EnginePlans are the query plans of the engine's reads of the tasks
// table: the read-first claim and the sweeps (lease, start deadline, a
// previous incarnation's tasks).
func (s *Store) EnginePlans(ctx context.Context) (map[string]string, error) {
	now := task.Now()
	qs := map[string]struct {
		q    string
		args []any
	}{
		"claim":          {s.claimReadSQL(""), []any{now, 100}},
		"lease sweep":    {s.d.lockWhereSQL(leaseIndex, leaseExpired, "lease_expires_at", "$2"), []any{now, 100}},
		"start deadline": {s.d.lockWhereSQL(startDeadlineIndex, overdue, "start_deadline", "$2"), []any{now, 100}},
		"instance":       {s.d.lockWhereSQL(leaseIndex, byInstance, "id", "$2"), []any{"x", 100}},
	}
	out := map[string]string{}
	for name, q := range qs {
		p, err := s.plan(ctx, q.q, q.args)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = p
	}
	return out, nil
}
