package queue_test

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/queue"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// TestRecovery covers what becomes of a task whose worker was lost, and the
// start deadline checked at claim time.
func TestRecovery(t *testing.T) {
	t.Parallel()
	runPerDialect(t, []dialectCase{
		{"ResumeBudgetExhausted", testResumeBudgetExhausted},
		{"AtMostOnceFails", testAtMostOnceFails},
		{"RecoversOwnInstanceAtStart", testRecoversOwnInstanceAtStart},
		{"LeavesOtherInstanceAtStart", testLeavesOtherInstanceAtStart},
		{"StartDeadlineAtClaim", func(t *testing.T, d string) { testStartDeadlineAtClaim(t, d, false) }},
		{"StartDeadlineAtLimitedClaim", func(t *testing.T, d string) { testStartDeadlineAtClaim(t, d, true) }},
	})
}

// countRuns is a probe processor that counts its runs in n.
func countRuns(n *atomic.Int64) probeFunc {
	return func(context.Context, *registry.Job[probeFields]) (*task.Result, error) {
		n.Add(1)
		return &task.Result{}, nil
	}
}

// claimAs claims the task as another worker with a lease, which then never
// renews it.
func (h *harness) claimAs(worker string, lease time.Duration) {
	h.t.Helper()
	recs, err := h.st.ClaimTasks(h.ctx, store.ClaimParams{Worker: worker, Limit: 1, Lease: lease})
	if err != nil || len(recs) != 1 {
		h.t.Fatalf("claiming as %s: %d tasks, %v", worker, len(recs), err)
	}
}

// testResumeBudgetExhausted fails a lost task that has been recovered
// MaxResumes times already, with category lost, without running it.
func testResumeBudgetExhausted(t *testing.T, dialect string) {
	var runs atomic.Int64
	h := newHarness(t, dialect, opts{probe: countRuns(&runs)})
	id := h.createProbe(probeFields{}, func(tk *task.Task) { tk.MaxAttempts, tk.ResumeAttemptCount = 5, 2 })
	h.claimAs("dead-worker", 50*time.Millisecond)
	h.newEngine(queue.Config{Concurrency: 2, MaxResumes: 2, MaintenanceInterval: 100 * time.Millisecond}, nil)
	tk := h.waitStatus(id, task.StatusFailed).Task
	if tk.ErrorCategory != task.CategoryLost || !strings.Contains(tk.ErrorMessage, "recovered 2 times") {
		t.Errorf("failed with %s: %q; want lost, naming the 2 recoveries", tk.ErrorCategory, tk.ErrorMessage)
	}
	if tk.RetryCount != 0 || tk.ResumeAttemptCount != 2 || runs.Load() != 0 {
		t.Errorf("retry_count %d, resume_attempt_count %d, %d runs; want 0, 2, 0", tk.RetryCount, tk.ResumeAttemptCount, runs.Load())
	}
}

// testAtMostOnceFails fails a lost task of an at-most-once type instead of
// running it again, attempts left or not.
func testAtMostOnceFails(t *testing.T, dialect string) {
	var runs atomic.Int64
	h := newHarness(t, dialect, opts{probe: countRuns(&runs), atMostOnce: true})
	id := h.createProbe(probeFields{}, func(tk *task.Task) { tk.MaxAttempts = 5 })
	h.claimAs("dead-worker", 50*time.Millisecond)
	h.newEngine(queue.Config{Concurrency: 2, MaintenanceInterval: 100 * time.Millisecond}, nil)
	tk := h.waitStatus(id, task.StatusFailed).Task
	if tk.ErrorCategory != task.CategoryLost || !strings.Contains(tk.ErrorMessage, "at most once") {
		t.Errorf("failed with %s: %q; want lost, saying the type runs at most once", tk.ErrorCategory, tk.ErrorMessage)
	}
	if runs.Load() != 0 || tk.Attempt != 1 {
		t.Errorf("%d runs, attempt %d; want 0, 1", runs.Load(), tk.Attempt)
	}
}

// testRecoversOwnInstanceAtStart recovers, at start, the task a previous
// incarnation of the same instance left executing, without waiting for
// its lease (an hour) or a maintenance pass (an hour away).
func testRecoversOwnInstanceAtStart(t *testing.T, dialect string) {
	var runs atomic.Int64
	h := newHarness(t, dialect, opts{probe: countRuns(&runs)})
	id := h.createProbe(probeFields{}, func(tk *task.Task) { tk.MaxAttempts = 1 })
	h.claimAs("node-a", time.Hour)
	h.newEngine(queue.Config{Instance: "node-a", Concurrency: 2, Lease: time.Hour, MaintenanceInterval: time.Hour}, nil)
	tk := h.waitStatus(id, task.StatusCompleted).Task
	if tk.Attempt != 2 || tk.RetryCount != 0 || tk.ResumeAttemptCount != 1 || runs.Load() != 1 {
		t.Errorf("completed at attempt %d, retry_count %d, resume_attempt_count %d after %d runs; want 2, 0, 1, 1",
			tk.Attempt, tk.RetryCount, tk.ResumeAttemptCount, runs.Load())
	}
	checkErrors(t, tk, []int{1}, task.CategoryLost)
	if len(tk.Errors) == 1 && !strings.Contains(tk.Errors[0].Message, "restarted") {
		t.Errorf("error message %q does not say the worker restarted", tk.Errors[0].Message)
	}
}

// testLeavesOtherInstanceAtStart leaves alone, at start, a task another
// instance runs under a live lease.
func testLeavesOtherInstanceAtStart(t *testing.T, dialect string) {
	h := newHarness(t, dialect, opts{})
	id := h.createProbe(probeFields{}, nil)
	h.claimAs("node-b", time.Hour)
	cc := &countingStore{Store: h.st}
	h.newEngine(queue.Config{Instance: "node-a", Concurrency: 2, Lease: time.Hour, MaintenanceInterval: time.Hour}, cc)
	cc.waitClaims(t, 3)
	if tk := h.get(id).Task; tk.Status != task.StatusExecuting || tk.ExecutorInstance != "node-b" || tk.Attempt != 1 {
		t.Errorf("the task is %s by %q at attempt %d; want still executing by node-b at 1", tk.Status, tk.ExecutorInstance, tk.Attempt)
	}
}

// testStartDeadlineAtClaim never starts a task whose start deadline passed
// before a claim found it: the claim fails it with start_timeout, with its
// event, though no maintenance pass (an hour away) ran. With limited, the
// claim goes through the queue-limit path.
func testStartDeadlineAtClaim(t *testing.T, dialect string, limited bool) {
	var runs atomic.Int64
	h := newHarness(t, dialect, opts{probe: countRuns(&runs)})
	if limited {
		if err := h.st.SetQueueLimit(h.ctx, "default", 5); err != nil {
			t.Fatal(err)
		}
	}
	late := h.createProbe(probeFields{}, func(tk *task.Task) {
		tk.StartTimeoutSeconds = 1
		tk.CreatedAt = tk.CreatedAt.Add(-3 * time.Second)
	})
	onTime := h.createProbe(probeFields{}, func(tk *task.Task) { tk.StartTimeoutSeconds = 60 })
	h.newEngine(queue.Config{Concurrency: 2, MaintenanceInterval: time.Hour}, nil)
	h.waitStatus(onTime, task.StatusCompleted)
	tk := h.waitStatus(late, task.StatusFailed).Task
	if tk.ErrorCategory != task.CategoryStartTimeout || tk.StartedAt != nil || tk.Attempt != 0 {
		t.Errorf("failed with %s, started_at %v, attempt %d; want start_timeout, never started", tk.ErrorCategory, tk.StartedAt, tk.Attempt)
	}
	if got, want := h.statusTrail(late), []task.Status{task.StatusPending, task.StatusFailed}; !slices.Equal(got, want) {
		t.Errorf("status events %v, want %v", got, want)
	}
	if runs.Load() != 1 {
		t.Errorf("%d runs, want 1 (the task on time)", runs.Load())
	}
}
