package queue_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/queue"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// cancellingClaims is a store whose claims hand each claimed task's
// cancel to the engine before the engine sees the claim: the window in
// which a cancel notification reaches an engine whose run of the task has
// not registered yet. With cancel, the task is cancelled in the store
// first, as the API does; without, the cancel is stale (for an earlier
// run) and the store still says the run owns the task.
type cancellingClaims struct {
	store.Store
	cancel bool
	eng    atomic.Pointer[queue.Engine]
}

func (c *cancellingClaims) ClaimTasks(ctx context.Context, p store.ClaimParams) ([]*store.Record, error) {
	recs, err := c.Store.ClaimTasks(ctx, p)
	for _, r := range recs {
		if c.cancel {
			if _, _, err := c.Store.SetStatus(ctx, store.StatusChange{TaskID: r.Task.ID, Scope: store.AdminScope,
				Change: task.Change{To: task.StatusCancelled}}); err != nil {
				return nil, err
			}
		}
		if eng := c.eng.Load(); eng != nil {
			eng.Cancel(r.Task.ID)
		}
	}
	return recs, err
}

func (c *cancellingClaims) Subscribe(context.Context) <-chan store.Notification {
	return make(chan store.Notification) // the test delivers the cancel itself
}

// TestCancelHeardBeforeTheRunRegisters checks that a cancel the engine
// hears between a claim's commit and its run's start stops the run at
// once (not a lease later, by the heartbeat), and that a stale one (the
// store says the run still owns its task) does not stop it.
func TestCancelHeardBeforeTheRunRegisters(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		for _, cancelled := range []bool{true, false} {
			name := dialect + "/stale"
			if cancelled {
				name = dialect + "/cancelled"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				ended := make(chan error, 1)
				h := newHarness(t, dialect, opts{probe: func(ctx context.Context, _ *registry.Job[probeFields]) (*task.Result, error) {
					select {
					case <-ctx.Done():
						signal(ended, ctx.Err())
						return nil, ctx.Err()
					case <-time.After(200 * time.Millisecond):
						signal(ended, nil)
						return &task.Result{}, nil
					}
				}})
				st := &cancellingClaims{Store: h.st, cancel: cancelled}
				eng := h.newEngine(queue.Config{Concurrency: 1, Lease: time.Minute}, st)
				st.eng.Store(eng)
				id := h.createProbe(probeFields{}, nil)
				err := wait(t, ended, "the processor to end")
				if cancelled {
					if !errors.Is(err, context.Canceled) {
						t.Errorf("the run of a task cancelled before it registered ended with %v; want it cancelled at once", err)
					}
					h.waitStatus(id, task.StatusCancelled)
					return
				}
				if err != nil {
					t.Errorf("a stale cancel stopped the run: %v", err)
				}
				h.waitStatus(id, task.StatusCompleted)
			})
		}
	}
}
