package queue_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/queue"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// testConcurrency runs more tasks than slots and never exceeds the slots.
func testConcurrency(t *testing.T, dialect string) {
	var running, peak atomic.Int32
	h := newHarness(t, dialect, opts{probe: func(ctx context.Context, _ *registry.Job[probeFields]) (*task.Result, error) {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		select {
		case <-time.After(150 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return &task.Result{}, nil
	}})
	ids := make([]uuid.UUID, 12)
	for i := range ids {
		ids[i] = h.createProbe(probeFields{N: i}, nil)
	}
	h.newEngine(queue.Config{Concurrency: 3}, nil)
	for _, id := range ids {
		h.waitStatus(id, task.StatusCompleted)
	}
	p := peak.Load()
	t.Logf("at most %d tasks ran at once", p)
	if p > 3 {
		t.Errorf("%d tasks ran at once, want at most 3", p)
	}
	if p < 2 {
		t.Errorf("at most %d task ran at once with 3 slots and 12 due tasks, want the slots used", p)
	}
}

// testPriority runs tasks in priority order, then oldest first.
func testPriority(t *testing.T, dialect string) {
	var (
		mu    sync.Mutex
		order []int
	)
	h := newHarness(t, dialect, opts{probe: func(_ context.Context, job *registry.Job[probeFields]) (*task.Result, error) {
		mu.Lock()
		order = append(order, job.Fields.N)
		mu.Unlock()
		return &task.Result{}, nil
	}})
	priorities := []int{0, 5, -3, 10, 5, 1} // N is the index
	ids := make([]uuid.UUID, len(priorities))
	for i, p := range priorities {
		ids[i] = h.createProbe(probeFields{N: i}, func(tk *task.Task) { tk.Priority = p })
	}
	h.newEngine(queue.Config{Concurrency: 1}, nil)
	for _, id := range ids {
		h.waitStatus(id, task.StatusCompleted)
	}
	want := []int{3, 1, 4, 5, 0, 2} // 10, 5 (older), 5, 1, 0, -3
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(order, want) {
		t.Errorf("run order (by creation index) = %v, want %v", order, want)
	}
}

// testRunAtInFuture does not run a task before its run_at.
func testRunAtInFuture(t *testing.T, dialect string) {
	h := newHarness(t, dialect, opts{})
	h.newEngine(queue.Config{Concurrency: 2}, nil)
	runAt := task.Now().Add(1500 * time.Millisecond)
	id := h.createProbe(probeFields{}, func(tk *task.Task) { tk.RunAt = runAt })
	time.Sleep(500 * time.Millisecond)
	if tk := h.get(id).Task; tk.Status != task.StatusPending || tk.Attempt != 0 {
		t.Fatalf("0.5s before its run_at the task is %s at attempt %d, want pending at 0", tk.Status, tk.Attempt)
	}
	tk := h.waitStatus(id, task.StatusCompleted).Task
	if tk.StartedAt == nil || tk.StartedAt.Before(runAt) {
		t.Errorf("started_at %v is before run_at %v", tk.StartedAt, runAt)
	}
}

// testStopReleasesLongTask stops an engine during a task that outlives the
// grace period: the task goes back to pending, and another engine runs it.
func testStopReleasesLongTask(t *testing.T, dialect string) {
	started := make(chan struct{}, 1)
	ended := make(chan error, 1)
	h := newHarness(t, dialect, opts{probe: func(ctx context.Context, job *registry.Job[probeFields]) (*task.Result, error) {
		if job.Task.Attempt > 1 {
			return &task.Result{Data: "second engine"}, nil
		}
		signal(started, struct{}{})
		<-ctx.Done()
		signal(ended, ctx.Err())
		return nil, ctx.Err()
	}})
	eng := h.newEngine(queue.Config{Concurrency: 2, ShutdownGrace: 200 * time.Millisecond}, nil)
	id := h.createProbe(probeFields{}, func(tk *task.Task) { tk.MaxAttempts = 3 })
	wait(t, started, "the processor to start")

	stopped := make(chan time.Duration, 1)
	begin := time.Now()
	go func() {
		eng.Stop()
		stopped <- time.Since(begin)
	}()
	took := wait(t, stopped, "Stop to return")
	if took < 200*time.Millisecond || took > 5*time.Second {
		t.Errorf("Stop took %s, want the 200ms grace period and then a prompt return", took)
	}
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("processor context error = %v, want context.Canceled", err)
		}
	default:
		t.Error("Stop returned before the processor's context was cancelled")
	}
	tk := h.get(id).Task
	if tk.Status != task.StatusPending || tk.Attempt != 1 || tk.RetryCount != 0 || len(tk.Errors) != 0 ||
		tk.ExecutorInstance != "" || tk.LeaseExpiresAt != nil {
		t.Fatalf("after Stop: status %s, attempt %d, retry_count %d, errors %+v, executor %q, lease %v; "+
			"want pending, 1, 0, none, \"\", nil", tk.Status, tk.Attempt, tk.RetryCount, tk.Errors, tk.ExecutorInstance, tk.LeaseExpiresAt)
	}
	eng.Stop() // idempotent

	other := h.newEngine(queue.Config{Concurrency: 2}, nil)
	tk = h.waitStatus(id, task.StatusCompleted).Task
	if tk.Attempt != 2 || tk.ExecutorInstance != other.Instance() {
		t.Errorf("completed at attempt %d by %q, want attempt 2 by %q", tk.Attempt, tk.ExecutorInstance, other.Instance())
	}
	want := []task.Status{task.StatusPending, task.StatusExecuting, task.StatusPending, task.StatusExecuting, task.StatusCompleted}
	if got := h.statusTrail(id); !slices.Equal(got, want) {
		t.Errorf("status events = %v, want %v", got, want)
	}
}

// testStopWaitsWithinGrace lets a running task finish when it does so
// within the grace period.
func testStopWaitsWithinGrace(t *testing.T, dialect string) {
	started := make(chan struct{}, 1)
	h := newHarness(t, dialect, opts{probe: func(ctx context.Context, _ *registry.Job[probeFields]) (*task.Result, error) {
		signal(started, struct{}{})
		select {
		case <-time.After(300 * time.Millisecond):
			return &task.Result{Data: "finished"}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}})
	eng := h.newEngine(queue.Config{Concurrency: 2, ShutdownGrace: 10 * time.Second}, nil)
	id := h.createProbe(probeFields{}, nil)
	wait(t, started, "the processor to start")
	eng.Stop()
	if tk := h.get(id).Task; tk.Status != task.StatusCompleted || tk.Attempt != 1 {
		t.Errorf("after Stop the task is %s at attempt %d, want completed at 1", tk.Status, tk.Attempt)
	}
}

// testNotifyWakesIdleEngine wakes an engine whose next poll is far away.
func testNotifyWakesIdleEngine(t *testing.T, dialect string) {
	h := newHarness(t, dialect, opts{})
	cc := &countingStore{Store: h.st, quiet: true}
	eng := h.newEngine(queue.Config{Concurrency: 2, PollInterval: 10 * time.Second}, cc)
	cc.waitClaims(t, 1) // the first look at the empty queue
	id := h.createProbe(probeFields{}, nil)
	time.Sleep(300 * time.Millisecond)
	if n := cc.claims.Load(); n != 1 {
		t.Fatalf("the idle engine claimed %d times before Notify, want 1", n)
	}
	if tk := h.get(id).Task; tk.Status != task.StatusPending {
		t.Fatalf("before Notify the task is %s, want pending", tk.Status)
	}
	begin := time.Now()
	eng.Notify()
	eng.Notify() // never blocks
	h.waitStatus(id, task.StatusCompleted)
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("the task completed %s after Notify, want within a few seconds", took)
	}
}

// testStoreWakeUp runs a new task at once on an idle engine whose next
// poll is far away: the store's wake-up notification is enough.
func testStoreWakeUp(t *testing.T, dialect string) {
	h := newHarness(t, dialect, opts{})
	cc := &countingStore{Store: h.st}
	h.newEngine(queue.Config{Concurrency: 2, PollInterval: 10 * time.Second}, cc)
	cc.waitClaims(t, 1)
	begin := time.Now()
	id := h.createProbe(probeFields{}, nil)
	h.waitStatus(id, task.StatusCompleted)
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("the task completed %s after it was created, want within a few seconds", took)
	}
}

// testRescuesExpiredLease re-queues a task whose worker died (its lease
// expired unrenewed) and runs it again, under its resume budget: the lost
// run does not consume max_attempts, so a task with one attempt completes.
func testRescuesExpiredLease(t *testing.T, dialect string) {
	h := newHarness(t, dialect, opts{})
	id := h.createProbe(probeFields{}, func(tk *task.Task) { tk.MaxAttempts = 1 })
	recs, err := h.st.ClaimTasks(h.ctx, store.ClaimParams{Worker: "dead-worker", Limit: 1, Lease: 50 * time.Millisecond})
	if err != nil || len(recs) != 1 || recs[0].Task.ID != id {
		t.Fatalf("claiming as the dead worker: %d tasks, %v", len(recs), err)
	}
	eng := h.newEngine(queue.Config{Concurrency: 2, MaintenanceInterval: 100 * time.Millisecond}, nil)
	tk := h.waitStatus(id, task.StatusCompleted).Task
	if tk.Attempt != 2 || tk.RetryCount != 0 || tk.ResumeAttemptCount != 1 || tk.LastResumeAttempt == nil || tk.ExecutorInstance != eng.Instance() {
		t.Errorf("completed at attempt %d, retry_count %d, resume_attempt_count %d, last_resume_attempt %v, by %q; want 2, 0, 1, set, %q",
			tk.Attempt, tk.RetryCount, tk.ResumeAttemptCount, tk.LastResumeAttempt, tk.ExecutorInstance, eng.Instance())
	}
	checkErrors(t, tk, []int{1}, task.CategoryLost)
	if len(tk.Errors) == 1 && !strings.Contains(tk.Errors[0].Message, "dead-worker") {
		t.Errorf("error message %q does not name the lost worker", tk.Errors[0].Message)
	}
}

// testProgressThrottled emits at most one progress event per interval,
// and always the one at 100%.
func testProgressThrottled(t *testing.T, dialect string) {
	const interval = 500 * time.Millisecond
	var elapsed atomic.Int64
	h := newHarness(t, dialect, opts{probe: func(ctx context.Context, job *registry.Job[probeFields]) (*task.Result, error) {
		begin := time.Now()
		for i := 1; i <= 50; i++ {
			if err := job.Progress(ctx, float64(i)*2, fmt.Sprintf("step %d", i)); err != nil {
				return nil, err
			}
		}
		elapsed.Store(int64(time.Since(begin)))
		return &task.Result{}, nil
	}})
	h.newEngine(queue.Config{Concurrency: 2, ProgressInterval: interval}, nil)
	id := h.createProbe(probeFields{}, nil)
	tk := h.waitStatus(id, task.StatusCompleted).Task
	if tk.Stage != "step 50" {
		t.Errorf("stage = %q, want the last one, %q", tk.Stage, "step 50")
	}
	took := time.Duration(elapsed.Load())
	got := h.progressEvents(id)
	t.Logf("50 progress calls took %s and made %d events: %v", took, len(got), got)
	// One at the first call, one per interval after it, one at 100%.
	limit := 2 + int(took/interval)
	if len(got) < 2 || len(got) > limit {
		t.Fatalf("%d progress events %v, want 2 to %d", len(got), got, limit)
	}
	if got[0] != 2 || got[len(got)-1] != 100 {
		t.Errorf("progress events %v, want the first at 2 and the last at 100", got)
	}
}

// testProgressClamped keeps progress within 0–100 and refuses NaN, which
// no event can carry.
func testProgressClamped(t *testing.T, dialect string) {
	type seen struct {
		nanErr   error
		progress []float64
	}
	out := make(chan seen, 1)
	var h *harness
	h = newHarness(t, dialect, opts{probe: func(ctx context.Context, job *registry.Job[probeFields]) (*task.Result, error) {
		var s seen
		s.nanErr = job.Progress(ctx, math.NaN(), "nan")
		for _, p := range []float64{-5, 250, 100.0 / 3} {
			if err := job.Progress(ctx, p, "clamp"); err != nil {
				return nil, err
			}
			rec, err := h.st.GetTask(ctx, job.Task.ID, store.AdminScope)
			if err != nil {
				return nil, err
			}
			s.progress = append(s.progress, rec.Task.Progress)
		}
		out <- s
		return &task.Result{}, nil
	}})
	h.newEngine(queue.Config{Concurrency: 2, ProgressInterval: time.Nanosecond}, nil)
	id := h.createProbe(probeFields{}, nil)
	h.waitStatus(id, task.StatusCompleted)
	s := wait(t, out, "the processor's report")
	if s.nanErr == nil {
		t.Error("Progress(NaN) = nil, want an error")
	}
	if !slices.Equal(s.progress, []float64{0, 100, 33.33}) {
		t.Errorf("stored progress after Progress(-5), Progress(250) and Progress(100/3) = %v, want [0 100 33.33]", s.progress)
	}
	for _, p := range h.progressEvents(id) {
		if math.IsNaN(p) || p < 0 || p > 100 {
			t.Errorf("progress event with %g", p)
		}
	}
}

// testRuntimeWrites checks what a processor writes through its job:
// fields, the service task id and artifacts.
func testRuntimeWrites(t *testing.T, dialect string) {
	h := newHarness(t, dialect, opts{probe: func(ctx context.Context, job *registry.Job[probeFields]) (*task.Result, error) {
		job.Fields.Label, job.Fields.N = "saved", 42
		if err := job.SaveFields(ctx); err != nil {
			return nil, err
		}
		if err := job.SetServiceTaskID(ctx, "svc-123"); err != nil {
			return nil, err
		}
		a, err := job.PutArtifact(ctx, "out.txt", "text/plain", []byte("artifact body"))
		if err != nil {
			return nil, err
		}
		return &task.Result{Artifacts: []task.Artifact{a}}, nil
	}})
	h.newEngine(queue.Config{Concurrency: 2, PublicBaseURL: "http://compute.test/"}, nil)
	id := h.createProbe(probeFields{Label: "input", N: 1}, nil)
	rec := h.waitStatus(id, task.StatusCompleted)

	if f, ok := rec.Fields.(*probeFields); !ok || *f != (probeFields{Label: "saved", N: 42}) {
		t.Errorf("stored fields = %#v, want the saved ones", rec.Fields)
	}
	if rec.Task.ServiceTaskID != "svc-123" {
		t.Errorf("service_task_id = %q, want svc-123", rec.Task.ServiceTaskID)
	}
	var res task.Result
	if err := json.Unmarshal(rec.Task.Result, &res); err != nil {
		t.Fatalf("result %s: %v", rec.Task.Result, err)
	}
	key := artifact.TaskKey(id.String(), "out.txt")
	if len(res.Artifacts) != 1 || res.Artifacts[0].Key != key || res.Artifacts[0].URL != "http://compute.test/api/v1/artifacts/"+key ||
		res.Artifacts[0].Size != int64(len("artifact body")) {
		t.Fatalf("artifacts = %+v, want %s at http://compute.test/api/v1/artifacts/%s", res.Artifacts, key, key)
	}
	rc, _, err := h.artifacts.Open(h.ctx, key)
	if err != nil {
		t.Fatalf("opening the artifact: %v", err)
	}
	defer rc.Close()
	if b, err := io.ReadAll(rc); err != nil || string(b) != "artifact body" {
		t.Errorf("artifact content = %q, %v; want %q", b, err, "artifact body")
	}
}

// testQueues limits an engine to its queues.
func testQueues(t *testing.T, dialect string) {
	h := newHarness(t, dialect, opts{})
	h.newEngine(queue.Config{Concurrency: 2, Queues: []string{"mine"}}, nil)
	other := h.createProbe(probeFields{}, func(tk *task.Task) { tk.QueueName = "other" })
	mine := h.createProbe(probeFields{}, func(tk *task.Task) { tk.QueueName = "mine" })
	h.waitStatus(mine, task.StatusCompleted)
	time.Sleep(100 * time.Millisecond)
	if tk := h.get(other).Task; tk.Status != task.StatusPending || tk.Attempt != 0 {
		t.Errorf("the task of another queue is %s at attempt %d, want pending at 0", tk.Status, tk.Attempt)
	}
}

// testQueueLimit keeps a limited queue within its global limit across
// engines while other queues use the free slots.
func testQueueLimit(t *testing.T, dialect string) {
	probe, peaks := peakProbe(func(tk *task.Task) string { return tk.QueueName })
	h := newHarness(t, dialect, opts{probe: probe})
	if err := h.st.SetQueueLimit(h.ctx, "gpu", 1); err != nil {
		t.Fatalf("SetQueueLimit: %v", err)
	}
	var ids []uuid.UUID
	for i := range 8 {
		q := "gpu"
		if i%2 == 1 {
			q = "default"
		}
		ids = append(ids, h.createProbe(probeFields{N: i}, func(tk *task.Task) { tk.QueueName = q }))
	}
	h.newEngine(queue.Config{Concurrency: 2}, nil)
	h.newEngine(queue.Config{Concurrency: 2}, nil)
	for _, id := range ids {
		h.waitStatus(id, task.StatusCompleted)
	}
	peak := peaks()
	t.Logf("peak running by queue: %v", peak)
	if peak["gpu"] != 1 {
		t.Errorf("at most %d gpu tasks ran at once, want exactly 1 (the queue's limit)", peak["gpu"])
	}
}

// peakProbe returns a probe processor whose runs take 100 ms and the peak
// number of runs at once it saw per key of their tasks.
func peakProbe(key func(*task.Task) string) (probeFunc, func() map[string]int) {
	var (
		mu      sync.Mutex
		running = map[string]int{}
		peak    = map[string]int{}
	)
	probe := func(ctx context.Context, job *registry.Job[probeFields]) (*task.Result, error) {
		k := key(job.Task)
		mu.Lock()
		running[k]++
		peak[k] = max(peak[k], running[k])
		mu.Unlock()
		defer func() {
			mu.Lock()
			running[k]--
			mu.Unlock()
		}()
		select {
		case <-time.After(100 * time.Millisecond):
			return &task.Result{}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return probe, func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(peak)
	}
}

// testStartTimeout fails a task that no worker started before its start
// deadline.
func testStartTimeout(t *testing.T, dialect string) {
	h := newHarness(t, dialect, opts{})
	h.newEngine(queue.Config{Concurrency: 2, Queues: []string{"served"}, MaintenanceInterval: 100 * time.Millisecond}, nil)
	id := h.createProbe(probeFields{}, func(tk *task.Task) { tk.QueueName, tk.StartTimeoutSeconds = "unserved", 1 })
	tk := h.waitStatus(id, task.StatusFailed).Task
	if tk.ErrorCategory != task.CategoryStartTimeout || tk.StartedAt != nil || tk.Attempt != 0 {
		t.Errorf("error_category %q, started_at %v, attempt %d; want %q, nil, 0", tk.ErrorCategory, tk.StartedAt, tk.Attempt, task.CategoryStartTimeout)
	}
	if waited := tk.CompletedAt.Sub(tk.CreatedAt); waited < time.Second {
		t.Errorf("failed %s after creation, before its 1s start deadline", waited)
	}
}

// testLifecycle checks Start, Stop and Instance.
func testLifecycle(t *testing.T, dialect string) {
	h := newHarness(t, dialect, opts{})
	idle := queue.New(queue.Config{}, h.st, h.reg, h.artifacts, testdb.Logger(t))
	idle.Stop() // before Start: a no-op
	idle.Stop()
	if idle.Instance() == "" {
		t.Error("Instance() is empty, want a generated name")
	}
	named := h.newEngine(queue.Config{Instance: "worker-7"}, nil)
	if named.Instance() != "worker-7" {
		t.Errorf("Instance() = %q, want worker-7", named.Instance())
	}
	if err := named.Start(h.ctx); err == nil {
		t.Error("a second Start succeeded, want an error")
	}
	a := queue.New(queue.Config{}, h.st, h.reg, nil, nil)
	b := queue.New(queue.Config{}, h.st, h.reg, nil, nil)
	if a.Instance() == b.Instance() {
		t.Errorf("two engines share the instance name %q", a.Instance())
	}
	id := h.createProbe(probeFields{}, nil)
	if tk := h.waitStatus(id, task.StatusCompleted).Task; tk.ExecutorInstance != "worker-7" {
		t.Errorf("executor_instance = %q, want worker-7", tk.ExecutorInstance)
	}
}
