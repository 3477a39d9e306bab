package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/store/sqlstore"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// TestFinishRunsRefusesASecondChangeOfATask checks that a batch changing
// one task twice writes the first change and refuses the second, also when
// the second would be allowed after the first (pending, then cancelled).
func TestFinishRunsRefusesASecondChangeOfATask(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s, id := newEchoStore(t, dialect)
			recs, err := s.ClaimTasks(ctx, store.ClaimParams{Worker: "w", Limit: 1, Lease: time.Minute})
			if err != nil || len(recs) != 1 {
				t.Fatalf("ClaimTasks: %v, %d records", err, len(recs))
			}
			errs, err := s.FinishRuns(ctx, []store.StatusChange{
				{TaskID: id, Scope: store.AdminScope, Change: task.Change{To: task.StatusPending, Attempt: 1}},
				{TaskID: id, Change: task.Change{To: task.StatusCancelled}},
			})
			if err != nil {
				t.Fatal(err)
			}
			if errs[0] != nil || !errors.Is(errs[1], task.ErrStaleRun) {
				t.Errorf("errors %v; want the first change written and the second refused as a stale run", errs)
			}
			rec, err := s.GetTask(ctx, id, store.AdminScope)
			if err != nil {
				t.Fatal(err)
			}
			if rec.Task.Status != task.StatusPending {
				t.Errorf("task is %s, want pending", rec.Task.Status)
			}
			assertStatusEvents(t, s, id, task.StatusPending, task.StatusExecuting, task.StatusPending)
		})
	}
}

// TestFinishRunsLocksRowsBeforeTheEventLock checks, on PostgreSQL, that
// FinishRuns takes every row lock before the event-order lock: if the
// events of the rows it could write were inserted before it waited for
// the last row, the transaction would hold the event-order lock while it
// waits for a row that another writer holds while waiting for that lock:
// a deadlock.
func TestFinishRunsLocksRowsBeforeTheEventLock(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, ids := newEchoStoreN(t, "postgres", 2)
	x, y := ids[0], ids[1]
	recs, err := s.ClaimTasks(ctx, store.ClaimParams{Worker: "w", Limit: 2, Lease: time.Minute})
	if err != nil || len(recs) != 2 {
		t.Fatalf("ClaimTasks: %v, %d records", err, len(recs))
	}
	locked, release := make(chan struct{}), make(chan struct{})
	other := make(chan error, 1)
	go func() {
		other <- s.InTx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `SELECT id FROM tasks WHERE id = $1 FOR UPDATE`, x.String()); err != nil {
				return err
			}
			close(locked)
			<-release
			_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(sqlstore.EventOrderLock))
			return err
		})
	}()
	<-locked
	go func() {
		time.Sleep(300 * time.Millisecond) // FinishRuns is waiting for x's row by now
		close(release)
	}()
	finishCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	errs, err := s.FinishRuns(finishCtx, []store.StatusChange{
		{TaskID: y, Scope: store.AdminScope, Change: task.Change{To: task.StatusCompleted, Attempt: 1}},
		{TaskID: x, Scope: store.AdminScope, Change: task.Change{To: task.StatusCompleted, Attempt: 1}},
	})
	if err != nil || errs[0] != nil || errs[1] != nil {
		t.Fatalf("FinishRuns: %v, %v", err, errs)
	}
	if err := <-other; err != nil {
		t.Fatalf("the other writer: %v", err)
	}
	for _, id := range []uuid.UUID{x, y} {
		rec, err := s.GetTask(ctx, id, store.AdminScope)
		if err != nil || rec.Task.Status != task.StatusCompleted {
			t.Errorf("task %s: %v, %+v; want completed", id, err, rec)
		}
	}
}

// TestFinishRunsWakesOnRequeue checks that an outcome putting a task back
// to pending (a retry, a release at shutdown) wakes idle engines, as a
// create does, instead of leaving it to their next poll.
func TestFinishRunsWakesOnRequeue(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s, id := newEchoStore(t, dialect)
			recs, err := s.ClaimTasks(ctx, store.ClaimParams{Worker: "w", Limit: 1, Lease: time.Minute})
			if err != nil || len(recs) != 1 {
				t.Fatalf("ClaimTasks: %v, %d records", err, len(recs))
			}
			notes := s.Subscribe(ctx)
			errs, err := s.FinishRuns(ctx, []store.StatusChange{{TaskID: id, Scope: store.AdminScope,
				Change: task.Change{To: task.StatusPending, Attempt: 1}}})
			if err != nil || errs[0] != nil {
				t.Fatalf("FinishRuns: %v, %v", err, errs)
			}
			timeout := time.After(5 * time.Second)
			for {
				select {
				case n := <-notes:
					if n.Kind == store.NotifyWake {
						return
					}
				case <-timeout:
					t.Fatal("no wake-up within 5 s of a task going back to pending")
				}
			}
		})
	}
}

// TestRescueRunsStartedLateChangesNothing checks that a rescue whose
// transaction starts after its StartBy (the database kept it waiting,
// and so the workers whose leases expired meanwhile) takes no task.
func TestRescueRunsStartedLateChangesNothing(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s, id := newEchoStore(t, dialect)
			if _, err := s.ClaimTasks(ctx, store.ClaimParams{Worker: "w", Limit: 1, Lease: time.Millisecond}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond) // the lease expires
			decide := func(t *task.Task) store.StatusChange {
				return store.StatusChange{Change: task.Change{To: task.StatusPending, CountResume: true}}
			}
			rescued, err := s.RescueRuns(ctx, store.RescueParams{Decide: decide, StartBy: time.Now().Add(-time.Second)})
			if !errors.Is(err, store.ErrRescueLate) || len(rescued) != 0 {
				t.Fatalf("RescueRuns started late: %d rescued, %v; want none and ErrRescueLate", len(rescued), err)
			}
			if rec, err := s.GetTask(ctx, id, store.AdminScope); err != nil || rec.Task.Status != task.StatusExecuting {
				t.Fatalf("task after a late rescue: %v, %+v; want it still executing", err, rec)
			}
			rescued, err = s.RescueRuns(ctx, store.RescueParams{Decide: decide, StartBy: time.Now().Add(time.Minute)})
			if err != nil || len(rescued) != 1 || rescued[0].Status != task.StatusPending {
				t.Fatalf("RescueRuns in time: %v, %+v; want the task re-queued", err, rescued)
			}
		})
	}
}
