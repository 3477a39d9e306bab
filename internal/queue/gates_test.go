package queue_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/queue"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
)

func TestEngineExecutorGates(t *testing.T) {
	t.Parallel()
	runPerDialect(t, []dialectCase{
		{"ExecutorLimit", testExecutorLimit},
		{"Deferred", testDeferred},
		{"DeferredKeepsStartDeadline", testDeferredKeepsStartDeadline},
	})
}

// testExecutorLimit runs tasks of a limited executor and of another on two
// engines: never more than the limit run on the limited one at once, and
// the other's tasks are not held back.
func testExecutorLimit(t *testing.T, dialect string) {
	probe, peaks := peakProbe(func(tk *task.Task) string { return tk.ProviderType })
	h := newHarness(t, dialect, opts{probe: probe})
	var ids []uuid.UUID
	for i := range 8 {
		ex := "gpu"
		if i%2 == 1 {
			ex = "api"
		}
		ids = append(ids, h.createProbe(probeFields{N: i}, func(tk *task.Task) { tk.ProviderType = ex }))
	}
	limits := map[string]int{"gpu": 1}
	h.newEngine(queue.Config{Concurrency: 3, ExecutorLimits: limits}, nil)
	h.newEngine(queue.Config{Concurrency: 3, ExecutorLimits: limits}, nil)
	for _, id := range ids {
		h.waitStatus(id, task.StatusCompleted)
	}
	peak := peaks()
	t.Logf("peak running by executor: %v", peak)
	if peak["gpu"] != 1 {
		t.Errorf("at most %d gpu tasks ran at once, want exactly 1 (the executor's limit)", peak["gpu"])
	}
	if peak["api"] < 2 {
		t.Errorf("at most %d api tasks ran at once: the gpu limit held them back", peak["api"])
	}
}

// testDeferred: a run deferred twice (its executor paused) is not a failed
// attempt: a task allowed one attempt still completes, each deferral is in
// its errors, and the next run waits for the deferral's time.
func testDeferred(t *testing.T, dialect string) {
	var (
		mu    sync.Mutex
		until []time.Time
		began []time.Time
	)
	h := newHarness(t, dialect, opts{probe: func(_ context.Context, job *registry.Job[probeFields]) (*task.Result, error) {
		mu.Lock()
		defer mu.Unlock()
		began = append(began, time.Now())
		if job.Task.Attempt <= 2 {
			u := time.Now().Add(300 * time.Millisecond)
			until = append(until, u)
			return nil, task.Defer(fmt.Errorf("executor x is paused: 429"), u)
		}
		return &task.Result{Data: "ran"}, nil
	}})
	h.newEngine(queue.Config{Concurrency: 2}, nil)
	id := h.createProbe(probeFields{}, func(tk *task.Task) { tk.MaxAttempts = 1 })
	tk := h.waitStatus(id, task.StatusCompleted).Task
	if tk.RetryCount != 0 || tk.Attempt != 3 || len(tk.Errors) != 2 {
		t.Fatalf("retry_count %d, attempt %d, %d errors; want 0, 3, 2", tk.RetryCount, tk.Attempt, len(tk.Errors))
	}
	for _, e := range tk.Errors {
		if e.Category != task.CategoryRateLimited {
			t.Errorf("a deferral's error has category %q, want %q (the default for a deferral)", e.Category, task.CategoryRateLimited)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range until {
		if began[i+1].Before(until[i]) {
			t.Errorf("run %d began %s before the deferral's time", i+2, until[i].Sub(began[i+1]))
		}
	}
}

// testDeferredKeepsStartDeadline: a task deferred before it ever started
// has not started, so its start deadline fails it when its executor stays
// paused past it.
func testDeferredKeepsStartDeadline(t *testing.T, dialect string) {
	h := newHarness(t, dialect, opts{probe: func(context.Context, *registry.Job[probeFields]) (*task.Result, error) {
		return nil, task.Defer(fmt.Errorf("executor x is paused: 429"), time.Now().Add(2*time.Second))
	}})
	h.newEngine(queue.Config{Concurrency: 2, MaintenanceInterval: 100 * time.Millisecond}, nil)
	id := h.createProbe(probeFields{}, func(tk *task.Task) { tk.StartTimeoutSeconds = 1 })
	tk := h.waitStatus(id, task.StatusFailed).Task
	if tk.ErrorCategory != task.CategoryStartTimeout || tk.StartedAt != nil || tk.RetryCount != 0 {
		t.Errorf("error_category %q, started_at %v, retry_count %d; want %q, nil, 0",
			tk.ErrorCategory, tk.StartedAt, tk.RetryCount, task.CategoryStartTimeout)
	}
}
