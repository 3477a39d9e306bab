package queue_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/queue"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/echo"
	"github.com/google/uuid"
)

func TestEngine(t *testing.T) {
	t.Parallel()
	runPerDialect(t, []dialectCase{
		{"Success", testSuccess},
		{"RetryThenSuccess", testRetryThenSuccess},
		{"PlainErrorLastAttempt", testPlainErrorLastAttempt},
		{"PermanentError", testPermanentError},
		{"ProgressLastReportEmitted", testProgressLastReportEmitted},
		{"ProgressSupersededByOutcome", testProgressSupersededByOutcome},
		{"Panic", testPanic},
		{"Timeout", testTimeout},
		{"TimeoutFromTypeDefault", testTimeoutFromTypeDefault},
		{"Cancel", testCancel},
		{"CancelByNotification", testCancelByNotification},
		{"HeartbeatStopsLostRun", testHeartbeatStopsLostRun},
		{"CancelAfterZombieRun", testCancelAfterZombieRun},
		{"Concurrency", testConcurrency},
		{"ManyCompleters", testManyCompleters},
		{"Priority", testPriority},
		{"RunAtInFuture", testRunAtInFuture},
		{"StopReleasesLongTask", testStopReleasesLongTask},
		{"StopWaitsWithinGrace", testStopWaitsWithinGrace},
		{"NotifyWakesIdleEngine", testNotifyWakesIdleEngine},
		{"StoreWakeUp", testStoreWakeUp},
		{"RescuesExpiredLease", testRescuesExpiredLease},
		{"ProgressThrottled", testProgressThrottled},
		{"ProgressClamped", testProgressClamped},
		{"RuntimeWrites", testRuntimeWrites},
		{"Queues", testQueues},
		{"QueueLimit", testQueueLimit},
		{"StartTimeout", testStartTimeout},
		{"Lifecycle", testLifecycle},
	})
}

// testSuccess runs an echo task to completion.
func testSuccess(t *testing.T, dialect string) {
	h := newHarness(t, dialect, opts{})
	eng := h.newEngine(queue.Config{Concurrency: 2}, nil)
	id := h.create(h.newTask(echo.Name, nil), &echo.Fields{Message: "hello"})
	tk := h.waitStatus(id, task.StatusCompleted).Task

	var res struct {
		Artifacts []task.Artifact `json:"artifacts"`
		Data      echo.Output     `json:"data"`
	}
	if err := json.Unmarshal(tk.Result, &res); err != nil {
		t.Fatalf("result %s: %v", tk.Result, err)
	}
	if res.Data.Message != "hello" || res.Artifacts == nil || len(res.Artifacts) != 0 {
		t.Errorf("result = %s, want message hello and an empty artifact list", tk.Result)
	}
	if tk.Progress != 100 {
		t.Errorf("progress = %g, want 100", tk.Progress)
	}
	if tk.Attempt != 1 || tk.RetryCount != 0 || len(tk.Errors) != 0 || tk.ErrorMessage != "" {
		t.Errorf("attempt %d, retry_count %d, errors %+v, error_message %q; want 1, 0, none, \"\"",
			tk.Attempt, tk.RetryCount, tk.Errors, tk.ErrorMessage)
	}
	if tk.StartedAt == nil || tk.CompletedAt == nil || tk.CompletedAt.Before(*tk.StartedAt) {
		t.Errorf("started_at %v, completed_at %v: want both, in that order", tk.StartedAt, tk.CompletedAt)
	}
	if tk.ExecutorInstance != eng.Instance() {
		t.Errorf("executor_instance = %q, want the engine's %q", tk.ExecutorInstance, eng.Instance())
	}
	if tk.LeaseExpiresAt != nil {
		t.Errorf("lease_expires_at = %v on a completed task, want nil", tk.LeaseExpiresAt)
	}
	want := []task.Status{task.StatusPending, task.StatusExecuting, task.StatusCompleted}
	if got := h.statusTrail(id); !slices.Equal(got, want) {
		t.Errorf("status events = %v, want %v", got, want)
	}
}

// testRetryThenSuccess fails twice with a plain error, then succeeds.
func testRetryThenSuccess(t *testing.T, dialect string) {
	var calls atomic.Int32
	h := newHarness(t, dialect, opts{probe: func(_ context.Context, job *registry.Job[probeFields]) (*task.Result, error) {
		calls.Add(1)
		if job.Task.Attempt <= 2 {
			return nil, fmt.Errorf("flaky on attempt %d", job.Task.Attempt)
		}
		return &task.Result{Data: "third time"}, nil
	}})
	h.newEngine(queue.Config{Concurrency: 2}, nil)
	id := h.createProbe(probeFields{Label: "flaky"}, func(tk *task.Task) { tk.MaxAttempts = 3 })
	tk := h.waitStatus(id, task.StatusCompleted).Task

	if tk.RetryCount != 2 || tk.Attempt != 3 || calls.Load() != 3 {
		t.Errorf("retry_count %d, attempt %d, processor calls %d; want 2, 3, 3", tk.RetryCount, tk.Attempt, calls.Load())
	}
	checkErrors(t, tk, []int{1, 2}, task.CategoryProcessor)
	for i, e := range tk.Errors {
		if want := fmt.Sprintf("flaky on attempt %d", i+1); e.Message != want {
			t.Errorf("errors[%d].message = %q, want %q", i, e.Message, want)
		}
	}
	// backoff waits 0.5–1s after attempt 1 and 1–2s after attempt 2.
	if gap := tk.Errors[1].At.Sub(tk.Errors[0].At); gap < 500*time.Millisecond {
		t.Errorf("attempt 2 failed %s after attempt 1, want at least the 0.5s backoff", gap)
	}
	if gap := tk.CompletedAt.Sub(tk.Errors[1].At); gap < time.Second {
		t.Errorf("attempt 3 completed %s after attempt 2 failed, want at least the 1s backoff", gap)
	}
	want := []task.Status{
		task.StatusPending, task.StatusExecuting, task.StatusPending, task.StatusExecuting,
		task.StatusPending, task.StatusExecuting, task.StatusCompleted,
	}
	if got := h.statusTrail(id); !slices.Equal(got, want) {
		t.Errorf("status events = %v, want %v", got, want)
	}
}

// testPlainErrorLastAttempt fails a task that has no attempt left.
func testPlainErrorLastAttempt(t *testing.T, dialect string) {
	var calls atomic.Int32
	h := newHarness(t, dialect, opts{probe: func(context.Context, *registry.Job[probeFields]) (*task.Result, error) {
		calls.Add(1)
		return nil, errors.New("service unavailable")
	}})
	h.newEngine(queue.Config{Concurrency: 2}, nil)
	id := h.createProbe(probeFields{}, func(tk *task.Task) { tk.MaxAttempts = 1 })
	tk := h.waitStatus(id, task.StatusFailed).Task

	if tk.ErrorCategory != task.CategoryProcessor || tk.ErrorMessage != "service unavailable" {
		t.Errorf("error_category %q, error_message %q; want %q, %q", tk.ErrorCategory, tk.ErrorMessage, task.CategoryProcessor, "service unavailable")
	}
	if tk.RetryCount != 1 || tk.Attempt != 1 || calls.Load() != 1 {
		t.Errorf("retry_count %d, attempt %d, calls %d; want 1, 1, 1", tk.RetryCount, tk.Attempt, calls.Load())
	}
	checkErrors(t, tk, []int{1}, task.CategoryProcessor)
	if tk.CompletedAt == nil || tk.Result != nil {
		t.Errorf("completed_at %v, result %s; want a time and no result", tk.CompletedAt, tk.Result)
	}
}

// testPermanentError fails at once although attempts remain.
func testPermanentError(t *testing.T, dialect string) {
	var calls atomic.Int32
	h := newHarness(t, dialect, opts{probe: func(context.Context, *registry.Job[probeFields]) (*task.Result, error) {
		calls.Add(1)
		return nil, fmt.Errorf("decoding input: %w", task.Permanent(errors.New("not an image")))
	}})
	h.newEngine(queue.Config{Concurrency: 2}, nil)
	id := h.createProbe(probeFields{}, func(tk *task.Task) { tk.MaxAttempts = 3 })
	tk := h.waitStatus(id, task.StatusFailed).Task

	if tk.ErrorCategory != task.CategoryPermanent || tk.ErrorMessage != "decoding input: not an image" {
		t.Errorf("error_category %q, error_message %q; want permanent, %q", tk.ErrorCategory, tk.ErrorMessage, "decoding input: not an image")
	}
	if tk.RetryCount != 1 || tk.Attempt != 1 {
		t.Errorf("retry_count %d, attempt %d; want 1, 1", tk.RetryCount, tk.Attempt)
	}
	checkErrors(t, tk, []int{1}, task.CategoryPermanent)
	// Give a wrong retry time to happen before checking there was none.
	time.Sleep(100 * time.Millisecond)
	if n := calls.Load(); n != 1 {
		t.Errorf("processor called %d times, want 1", n)
	}
	want := []task.Status{task.StatusPending, task.StatusExecuting, task.StatusFailed}
	if got := h.statusTrail(id); !slices.Equal(got, want) {
		t.Errorf("status events = %v, want %v", got, want)
	}
}

// testPanic fails a task whose processor panics and keeps the engine
// working.
func testPanic(t *testing.T, dialect string) {
	h := newHarness(t, dialect, opts{probe: func(_ context.Context, job *registry.Job[probeFields]) (*task.Result, error) {
		if job.Fields.Label == "panic" {
			var m map[string]int
			m["boom"]++ // a nil map write: a runtime panic
		}
		return &task.Result{Data: job.Fields.Label}, nil
	}})
	h.newEngine(queue.Config{Concurrency: 1}, nil)
	bad := h.createProbe(probeFields{Label: "panic"}, func(tk *task.Task) { tk.MaxAttempts = 3 })
	tk := h.waitStatus(bad, task.StatusFailed).Task
	if tk.ErrorCategory != task.CategoryPermanent || !strings.Contains(tk.ErrorMessage, "panicked") ||
		!strings.Contains(tk.ErrorMessage, "nil map") {
		t.Errorf("error_category %q, error_message %q; want permanent and a message saying the processor panicked and why",
			tk.ErrorCategory, tk.ErrorMessage)
	}
	if tk.RetryCount != 1 || tk.Attempt != 1 {
		t.Errorf("retry_count %d, attempt %d; want 1, 1 (no retry after a panic)", tk.RetryCount, tk.Attempt)
	}
	good := h.createProbe(probeFields{Label: "fine"}, nil)
	h.waitStatus(good, task.StatusCompleted)
}

// testTimeout fails a task that outlives its timeout_seconds.
func testTimeout(t *testing.T, dialect string) {
	var calls atomic.Int32
	h := newHarness(t, dialect, opts{probe: func(ctx context.Context, _ *registry.Job[probeFields]) (*task.Result, error) {
		calls.Add(1)
		<-ctx.Done()
		return nil, ctx.Err()
	}})
	h.newEngine(queue.Config{Concurrency: 2}, nil)
	id := h.createProbe(probeFields{}, func(tk *task.Task) { tk.TimeoutSeconds, tk.MaxAttempts = 1, 3 })
	tk := h.waitStatus(id, task.StatusFailed).Task

	if tk.ErrorCategory != task.CategoryTimeout || !strings.Contains(tk.ErrorMessage, "timed out after 1s") {
		t.Errorf("error_category %q, error_message %q; want timeout, a message with \"timed out after 1s\"", tk.ErrorCategory, tk.ErrorMessage)
	}
	if tk.RetryCount != 1 || tk.Attempt != 1 || calls.Load() != 1 {
		t.Errorf("retry_count %d, attempt %d, calls %d; want 1, 1, 1 (a timeout is not retried)", tk.RetryCount, tk.Attempt, calls.Load())
	}
	checkErrors(t, tk, []int{1}, task.CategoryTimeout)
	if run := tk.CompletedAt.Sub(*tk.StartedAt); run < time.Second {
		t.Errorf("failed %s after starting, before its 1s timeout", run)
	}
}

// testTimeoutFromTypeDefault times out a task without timeout_seconds
// after its type's default timeout, and says how long that was.
func testTimeoutFromTypeDefault(t *testing.T, dialect string) {
	h := newHarness(t, dialect, opts{timeout: time.Second, probe: func(ctx context.Context, _ *registry.Job[probeFields]) (*task.Result, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}})
	h.newEngine(queue.Config{Concurrency: 2}, nil)
	id := h.createProbe(probeFields{}, func(tk *task.Task) { tk.TimeoutSeconds = 0 })
	tk := h.waitStatus(id, task.StatusFailed).Task
	if tk.ErrorCategory != task.CategoryTimeout || !strings.Contains(tk.ErrorMessage, "timed out after 1s") {
		t.Errorf("error_category %q, error_message %q; want timeout, a message with \"timed out after 1s\"", tk.ErrorCategory, tk.ErrorMessage)
	}
}

// testManyCompleters runs tasks with several completers writing outcome
// batches at once: every task completes once, with its three events.
func testManyCompleters(t *testing.T, dialect string) {
	h := newHarness(t, dialect, opts{})
	ids := make([]uuid.UUID, 120)
	for i := range ids {
		ids[i] = h.create(h.newTask(echo.Name, nil), &echo.Fields{Message: fmt.Sprint(i)})
	}
	h.newEngine(queue.Config{Concurrency: 40, Completers: 3}, nil)
	want := []task.Status{task.StatusPending, task.StatusExecuting, task.StatusCompleted}
	for _, id := range ids {
		if tk := h.waitStatus(id, task.StatusCompleted).Task; tk.Attempt != 1 {
			t.Errorf("task %s completed at attempt %d, want 1", id, tk.Attempt)
		}
		if got := h.statusTrail(id); !slices.Equal(got, want) {
			t.Errorf("task %s: status events = %v, want %v", id, got, want)
		}
	}
}
