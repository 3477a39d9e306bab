package queue_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/queue"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// testCancel cancels an executing task as the API does: the store first,
// then the engine. The store's own cancel notification is kept from the
// engine, so Engine.Cancel alone stops the run. Whatever the processor
// returns afterwards, the task stays cancelled.
func testCancel(t *testing.T, dialect string) {
	tests := []struct {
		name string
		// after returns the processor's outcome once its context ended.
		after func(ctx context.Context) (*task.Result, error)
	}{
		{name: "processor returns its context error", after: func(ctx context.Context) (*task.Result, error) { return nil, ctx.Err() }},
		{name: "processor returns a result anyway", after: func(context.Context) (*task.Result, error) { return &task.Result{Data: "late"}, nil }},
		{name: "processor returns another error", after: func(context.Context) (*task.Result, error) { return nil, errors.New("interrupted") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			started := make(chan struct{}, 1)
			ended := make(chan error, 1)
			h := newHarness(t, dialect, opts{probe: func(ctx context.Context, _ *registry.Job[probeFields]) (*task.Result, error) {
				signal(started, struct{}{})
				<-ctx.Done()
				signal(ended, ctx.Err())
				return tt.after(ctx)
			}})
			eng := h.newEngine(queue.Config{Concurrency: 2}, &countingStore{Store: h.st, quiet: true})
			if eng.Cancel(uuid.New()) {
				t.Error("Cancel of a task the engine does not run = true")
			}
			id := h.createProbe(probeFields{}, func(tk *task.Task) { tk.MaxAttempts = 3 })
			wait(t, started, "the processor to start")
			h.waitStatus(id, task.StatusExecuting)

			if _, _, err := h.st.SetStatus(h.ctx, store.StatusChange{TaskID: id, Scope: store.AdminScope, Change: task.Change{To: task.StatusCancelled}}); err != nil {
				t.Fatalf("SetStatus(cancelled): %v", err)
			}
			if !eng.Cancel(id) {
				t.Fatal("Cancel of a running task = false")
			}
			if err := wait(t, ended, "the processor's context to end"); !errors.Is(err, context.Canceled) {
				t.Errorf("processor context error = %v, want context.Canceled", err)
			}
			// The run is over when the engine forgets it.
			deadline := time.Now().Add(waitLimit)
			for eng.Cancel(id) {
				if time.Now().After(deadline) {
					t.Fatalf("the run of %s did not end within %s", id, waitLimit)
				}
				time.Sleep(5 * time.Millisecond)
			}
			// A late write would land within the poll interval; look after it.
			time.Sleep(100 * time.Millisecond)
			tk := h.get(id).Task
			if tk.Status != task.StatusCancelled || tk.Result != nil || len(tk.Errors) != 0 || tk.RetryCount != 0 || tk.Attempt != 1 {
				t.Errorf("after the run: status %s, result %s, errors %+v, retry_count %d, attempt %d; want cancelled, none, none, 0, 1",
					tk.Status, tk.Result, tk.Errors, tk.RetryCount, tk.Attempt)
			}
			want := []task.Status{task.StatusPending, task.StatusExecuting, task.StatusCancelled}
			if got := h.statusTrail(id); !slices.Equal(got, want) {
				t.Errorf("status events = %v, want %v", got, want)
			}
		})
	}
}

// blockUntilCancelled is a probe processor that reports its start on
// started, waits for its context and reports the context's cause on ended.
func blockUntilCancelled(started chan<- struct{}, ended chan<- error) probeFunc {
	return func(ctx context.Context, _ *registry.Job[probeFields]) (*task.Result, error) {
		signal(started, struct{}{})
		<-ctx.Done()
		signal(ended, context.Cause(ctx))
		return nil, ctx.Err()
	}
}

// testCancelByNotification cancels an executing task in the store only:
// the store's cancel notification stops the run.
func testCancelByNotification(t *testing.T, dialect string) {
	started, ended := make(chan struct{}, 1), make(chan error, 1)
	h := newHarness(t, dialect, opts{probe: blockUntilCancelled(started, ended)})
	h.newEngine(queue.Config{Concurrency: 2}, nil)
	id := h.createProbe(probeFields{}, nil)
	wait(t, started, "the processor to start")
	h.waitStatus(id, task.StatusExecuting)
	if _, _, err := h.st.SetStatus(h.ctx, store.StatusChange{TaskID: id, Scope: store.AdminScope, Change: task.Change{To: task.StatusCancelled}}); err != nil {
		t.Fatalf("SetStatus(cancelled): %v", err)
	}
	if cause := wait(t, ended, "the run to be cancelled"); cause == nil || !strings.Contains(cause.Error(), "cancelled") {
		t.Errorf("run context cause = %v, want the task's cancellation", cause)
	}
	time.Sleep(100 * time.Millisecond)
	if tk := h.get(id).Task; tk.Status != task.StatusCancelled || len(tk.Errors) != 0 {
		t.Errorf("task is %s with errors %+v, want cancelled with none", tk.Status, tk.Errors)
	}
}

// testHeartbeatStopsLostRun stops a run whose task was changed behind the
// engine's back, with no notification: the lease renewal finds it lost.
func testHeartbeatStopsLostRun(t *testing.T, dialect string) {
	started, ended := make(chan struct{}, 1), make(chan error, 1)
	h := newHarness(t, dialect, opts{probe: blockUntilCancelled(started, ended)})
	eng := h.newEngine(queue.Config{Concurrency: 2, Heartbeat: 50 * time.Millisecond}, &countingStore{Store: h.st, quiet: true})
	id := h.createProbe(probeFields{}, nil)
	wait(t, started, "the processor to start")
	h.waitStatus(id, task.StatusExecuting)
	if _, _, err := h.st.SetStatus(h.ctx, store.StatusChange{TaskID: id, Scope: store.AdminScope, Change: task.Change{To: task.StatusCancelled}}); err != nil {
		t.Fatalf("SetStatus(cancelled): %v", err)
	}
	if cause := wait(t, ended, "the heartbeat to stop the run"); cause == nil || !strings.Contains(cause.Error(), "lease lost") {
		t.Errorf("run context cause = %v, want the lost lease", cause)
	}
	deadline := time.Now().Add(waitLimit)
	for eng.Cancel(id) {
		if time.Now().After(deadline) {
			t.Fatalf("the run of %s did not end within %s", id, waitLimit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if tk := h.get(id).Task; tk.Status != task.StatusCancelled || len(tk.Errors) != 0 {
		t.Errorf("task is %s with errors %+v, want cancelled with none", tk.Status, tk.Errors)
	}
}

// testCancelAfterZombieRun cancels a retried task whose previous run, in
// the same engine, ignored its cancellation and ended only after the retry
// started: the end of the old run must not hide the new one from Cancel.
func testCancelAfterZombieRun(t *testing.T, dialect string) {
	started := make(chan int, 2)
	release := make(chan struct{})
	cancelled2 := make(chan struct{}, 1)
	h := newHarness(t, dialect, opts{probe: func(ctx context.Context, job *registry.Job[probeFields]) (*task.Result, error) {
		started <- job.Task.Attempt
		if job.Task.Attempt == 1 {
			<-release // stuck in a call that ignores ctx
			return nil, ctx.Err()
		}
		<-ctx.Done()
		signal(cancelled2, struct{}{})
		return nil, ctx.Err()
	}})
	cc := &countingStore{Store: h.st, quiet: true}
	eng := h.newEngine(queue.Config{Concurrency: 2, PollInterval: 10 * time.Second}, cc)
	id := h.createProbe(probeFields{}, func(tk *task.Task) { tk.MaxAttempts = 3 })
	eng.Notify()
	if a := wait(t, started, "attempt 1 to start"); a != 1 {
		t.Fatalf("first run has attempt %d, want 1", a)
	}
	cancel := func() {
		t.Helper()
		if _, _, err := h.st.SetStatus(h.ctx, store.StatusChange{TaskID: id, Scope: store.AdminScope, Change: task.Change{To: task.StatusCancelled}}); err != nil {
			t.Fatalf("SetStatus(cancelled): %v", err)
		}
	}
	cancel()
	if !eng.Cancel(id) {
		t.Fatal("Cancel of attempt 1 = false")
	}
	// The user retries the task; the same engine claims it again.
	if _, _, err := h.st.SetStatus(h.ctx, store.StatusChange{TaskID: id, Scope: store.AdminScope, Change: task.Change{To: task.StatusPending, ResetForRetry: true}}); err != nil {
		t.Fatalf("SetStatus(pending): %v", err)
	}
	claims := cc.claims.Load()
	eng.Notify()
	if a := wait(t, started, "attempt 2 to start"); a != 2 {
		t.Fatalf("second run has attempt %d, want 2", a)
	}
	cc.waitClaims(t, claims+1)
	// The zombie returns; the slot it frees makes the engine claim again,
	// after it has forgotten the zombie.
	claims = cc.claims.Load()
	close(release)
	cc.waitClaims(t, claims+1)

	cancel()
	if !eng.Cancel(id) {
		t.Fatal("Cancel of attempt 2 = false after attempt 1 ended: the engine lost track of the running attempt")
	}
	wait(t, cancelled2, "attempt 2's context to be cancelled")
	if tk := h.get(id).Task; tk.Status != task.StatusCancelled || tk.Attempt != 2 {
		t.Errorf("task is %s at attempt %d, want cancelled at 2", tk.Status, tk.Attempt)
	}
}
