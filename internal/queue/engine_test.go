package queue_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"
	"go.uber.org/goleak"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/queue"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/echo"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// TestMain fails the package when a test leaves a goroutine behind: every
// engine is stopped and every store closed by the time its test ends.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitLimit bounds every wait on the engine.
const waitLimit = 20 * time.Second

// probeName is the test-only task type whose processor each test supplies.
const probeName = "probe"

// probeFields are the probe type's columns.
type probeFields struct {
	Label string `json:"label" db:"label"`
	N     int    `json:"n" db:"n"`
}

// probeMigrations create the probe type's table on both dialects.
var probeMigrations = fstest.MapFS{
	"sqlite/20260101009100_probe.sql": {Data: []byte(`-- +goose Up
CREATE TABLE probe_tasks (
    id    TEXT PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    label TEXT NOT NULL DEFAULT '',
    n     INTEGER NOT NULL DEFAULT 0
);

-- +goose Down
DROP TABLE probe_tasks;
`)},
	"postgres/20260101009100_probe.sql": {Data: []byte(`-- +goose Up
CREATE TABLE probe_tasks (
    id    UUID PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    label TEXT NOT NULL DEFAULT '',
    n     BIGINT NOT NULL DEFAULT 0
);

-- +goose Down
DROP TABLE probe_tasks;
`)},
}

// probeFunc is the processor of one test's probe tasks.
type probeFunc func(ctx context.Context, job *registry.Job[probeFields]) (*task.Result, error)

// probeType declares the probe type with processor fn and default timeout.
func probeType(fn probeFunc, timeout time.Duration) registry.Type[probeFields, struct{}] {
	return registry.Type[probeFields, struct{}]{
		Name:        probeName,
		Title:       "Probe",
		Description: "A test-only type whose processor each engine test supplies.",
		Processor:   registry.ProcessorFunc[probeFields](fn),
		Migrations:  probeMigrations,
		Timeout:     timeout,
	}
}

// succeed is a probe processor that completes at once.
func succeed(context.Context, *registry.Job[probeFields]) (*task.Result, error) {
	return &task.Result{Data: "ok"}, nil
}

// harness is one test's database, registry and artifact store; engines
// are added with newEngine.
type harness struct {
	t         *testing.T
	ctx       context.Context
	st        store.Store
	reg       *registry.Registry
	artifacts *artifact.Local
}

// opts adjust a harness before its store is opened.
type opts struct {
	probe   probeFunc
	timeout time.Duration // the probe type's default timeout
}

func newHarness(t *testing.T, dialect string, o opts) *harness {
	t.Helper()
	if o.probe == nil {
		o.probe = succeed
	}
	reg := registry.New()
	reg.MustRegister(echo.Type())
	reg.MustRegister(probeType(o.probe, o.timeout))
	arts, err := artifact.NewLocal(t.TempDir())
	if err != nil {
		t.Fatalf("artifact.NewLocal: %v", err)
	}
	return &harness{t: t, ctx: t.Context(), st: testdb.Open(t, dialect, reg), reg: reg, artifacts: arts}
}

// newEngine starts an engine over st (the harness's store when nil) and
// stops it when the test ends. PollInterval defaults to 20ms and
// ShutdownGrace to 5s.
func (h *harness) newEngine(cfg queue.Config, st store.Store) *queue.Engine {
	h.t.Helper()
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 20 * time.Millisecond
	}
	if cfg.ShutdownGrace == 0 {
		cfg.ShutdownGrace = 5 * time.Second
	}
	if st == nil {
		st = h.st
	}
	e := queue.New(cfg, st, h.reg, h.artifacts, testdb.Logger(h.t))
	if err := e.Start(h.ctx); err != nil {
		h.t.Fatalf("Start: %v", err)
	}
	h.t.Cleanup(e.Stop)
	return e
}

// newTask returns a pending task of the named type as the API would build
// it.
func (h *harness) newTask(typeName string, mut func(*task.Task)) *task.Task {
	h.t.Helper()
	def, ok := h.reg.Lookup(typeName)
	if !ok {
		h.t.Fatalf("unknown type %q", typeName)
	}
	now := task.Now()
	tk := &task.Task{
		ID:             uuid.Must(uuid.NewV7()),
		Type:           def.Name,
		Status:         task.StatusPending,
		ProviderType:   def.DefaultProvider,
		QueueName:      def.DefaultQueue,
		CreatedAt:      now,
		UpdatedAt:      now,
		RunAt:          now,
		MaxAttempts:    def.MaxAttempts,
		TimeoutSeconds: int(def.Timeout / time.Second),
		Errors:         []task.Error{},
	}
	if mut != nil {
		mut(tk)
	}
	return tk
}

// create stores tk with fields and returns its id.
func (h *harness) create(tk *task.Task, fields any) uuid.UUID {
	h.t.Helper()
	def, _ := h.reg.Lookup(tk.Type)
	if _, created, err := h.st.CreateTask(h.ctx, &store.Record{Task: tk, Fields: fields, Def: def}); err != nil || !created {
		h.t.Fatalf("CreateTask(%s): created=%v, %v", tk.ID, created, err)
	}
	return tk.ID
}

// createProbe creates a pending probe task; mut may adjust it first.
func (h *harness) createProbe(f probeFields, mut func(*task.Task)) uuid.UUID {
	h.t.Helper()
	return h.create(h.newTask(probeName, mut), &f)
}

// get loads a task.
func (h *harness) get(id uuid.UUID) *store.Record {
	h.t.Helper()
	rec, err := h.st.GetTask(h.ctx, id, store.AdminScope)
	if err != nil {
		h.t.Fatalf("GetTask(%s): %v", id, err)
	}
	return rec
}

// waitFor polls the task until ok holds, failing the test after waitLimit.
func (h *harness) waitFor(id uuid.UUID, what string, ok func(*task.Task) bool) *store.Record {
	h.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		rec := h.get(id)
		if ok(rec.Task) {
			return rec
		}
		if time.Now().After(deadline) {
			tk := rec.Task
			h.t.Fatalf("task %s: waited %s for %s; it is %s at attempt %d, retry_count %d, errors %+v",
				id, waitLimit, what, tk.Status, tk.Attempt, tk.RetryCount, tk.Errors)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitStatus waits until the task has status st.
func (h *harness) waitStatus(id uuid.UUID, st task.Status) *store.Record {
	h.t.Helper()
	return h.waitFor(id, string(st), func(tk *task.Task) bool { return tk.Status == st })
}

// events lists the task's events, oldest first.
func (h *harness) events(id uuid.UUID) []event.Event {
	h.t.Helper()
	evs, err := h.st.ListEvents(h.ctx, store.EventFilter{TaskID: id, Scope: store.AdminScope, Limit: 10000})
	if err != nil {
		h.t.Fatalf("ListEvents(%s): %v", id, err)
	}
	return evs
}

// statusTrail is the statuses of the task's status events, in order.
func (h *harness) statusTrail(id uuid.UUID) []task.Status {
	h.t.Helper()
	var out []task.Status
	for _, e := range h.events(id) {
		if strings.HasSuffix(e.EventType, "_"+event.KindStatus) {
			out = append(out, e.Status)
		}
	}
	return out
}

// progressEvents returns the progress recorded in each progress event.
func (h *harness) progressEvents(id uuid.UUID) []float64 {
	h.t.Helper()
	var out []float64
	for _, e := range h.events(id) {
		if !strings.HasSuffix(e.EventType, "_"+event.KindProgress) {
			continue
		}
		var b event.Body
		if err := json.Unmarshal(e.Body, &b); err != nil {
			h.t.Fatalf("event %d body %s: %v", e.ID, e.Body, err)
		}
		out = append(out, b.Progress)
	}
	return out
}

// wait receives from ch, failing the test after waitLimit.
func wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatalf("waited %s for %s", waitLimit, what)
	}
	var zero T
	return zero
}

// signal sends on ch without blocking.
func signal[T any](ch chan<- T, v T) {
	select {
	case ch <- v:
	default:
	}
}

// checkErrors fails unless the task's error list has one entry per want,
// with those attempt numbers and categories.
func checkErrors(t *testing.T, tk *task.Task, attempts []int, category string) {
	t.Helper()
	if len(tk.Errors) != len(attempts) {
		t.Fatalf("errors = %+v, want %d entries", tk.Errors, len(attempts))
	}
	for i, e := range tk.Errors {
		if e.Attempt != attempts[i] || e.Category != category || e.Message == "" || e.At.IsZero() {
			t.Errorf("errors[%d] = %+v, want attempt %d, category %s, a message and a time", i, e, attempts[i], category)
		}
	}
}

// countingStore counts the engine's claims, so a test can tell when the
// engine has looked for work. A quiet one also keeps the store's
// notifications (wake-ups, cancellations) from the engine, which then acts
// only on Notify, Cancel, its poll and its heartbeat.
type countingStore struct {
	store.Store
	quiet  bool
	claims atomic.Int64
}

func (c *countingStore) ClaimTasks(ctx context.Context, p store.ClaimParams) ([]*store.Record, error) {
	recs, err := c.Store.ClaimTasks(ctx, p)
	c.claims.Add(1)
	return recs, err
}

func (c *countingStore) Subscribe(ctx context.Context) <-chan store.Notification {
	if c.quiet {
		return make(chan store.Notification) // never delivers
	}
	return c.Store.Subscribe(ctx)
}

// waitClaims waits until the engine has made at least n claims.
func (c *countingStore) waitClaims(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for c.claims.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %d claims; saw %d", waitLimit, n, c.claims.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestEngine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		run  func(t *testing.T, dialect string)
	}{
		{"Success", testSuccess},
		{"RetryThenSuccess", testRetryThenSuccess},
		{"PlainErrorLastAttempt", testPlainErrorLastAttempt},
		{"PermanentError", testPermanentError},
		{"Panic", testPanic},
		{"Timeout", testTimeout},
		{"TimeoutFromTypeDefault", testTimeoutFromTypeDefault},
		{"Cancel", testCancel},
		{"CancelByNotification", testCancelByNotification},
		{"HeartbeatStopsLostRun", testHeartbeatStopsLostRun},
		{"CancelAfterZombieRun", testCancelAfterZombieRun},
		{"Concurrency", testConcurrency},
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
	}
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					t.Parallel()
					tt.run(t, dialect)
				})
			}
		})
	}
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

			if _, _, err := h.st.SetStatus(h.ctx, store.StatusChange{TaskID: id, To: task.StatusCancelled, Scope: store.AdminScope}); err != nil {
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
	if _, _, err := h.st.SetStatus(h.ctx, store.StatusChange{TaskID: id, To: task.StatusCancelled, Scope: store.AdminScope}); err != nil {
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
	if _, _, err := h.st.SetStatus(h.ctx, store.StatusChange{TaskID: id, To: task.StatusCancelled, Scope: store.AdminScope}); err != nil {
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
		if _, _, err := h.st.SetStatus(h.ctx, store.StatusChange{TaskID: id, To: task.StatusCancelled, Scope: store.AdminScope}); err != nil {
			t.Fatalf("SetStatus(cancelled): %v", err)
		}
	}
	cancel()
	if !eng.Cancel(id) {
		t.Fatal("Cancel of attempt 1 = false")
	}
	// The user retries the task; the same engine claims it again.
	if _, _, err := h.st.SetStatus(h.ctx, store.StatusChange{TaskID: id, To: task.StatusPending, Scope: store.AdminScope, ResetForRetry: true}); err != nil {
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
// expired unrenewed) and runs it again.
func testRescuesExpiredLease(t *testing.T, dialect string) {
	h := newHarness(t, dialect, opts{})
	id := h.createProbe(probeFields{}, func(tk *task.Task) { tk.MaxAttempts = 3 })
	recs, err := h.st.ClaimTasks(h.ctx, store.ClaimParams{Worker: "dead-worker", Limit: 1, Lease: 50 * time.Millisecond})
	if err != nil || len(recs) != 1 || recs[0].Task.ID != id {
		t.Fatalf("claiming as the dead worker: %d tasks, %v", len(recs), err)
	}
	eng := h.newEngine(queue.Config{Concurrency: 2, MaintenanceInterval: 100 * time.Millisecond}, nil)
	tk := h.waitStatus(id, task.StatusCompleted).Task
	if tk.Attempt != 2 || tk.RetryCount != 1 || tk.ExecutorInstance != eng.Instance() {
		t.Errorf("completed at attempt %d, retry_count %d, by %q; want 2, 1, %q", tk.Attempt, tk.RetryCount, tk.ExecutorInstance, eng.Instance())
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
		for _, p := range []float64{-5, 250} {
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
	if !slices.Equal(s.progress, []float64{0, 100}) {
		t.Errorf("stored progress after Progress(-5) and Progress(250) = %v, want [0 100]", s.progress)
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
	var (
		mu      sync.Mutex
		running = map[string]int{}
		peak    = map[string]int{}
	)
	h := newHarness(t, dialect, opts{probe: func(ctx context.Context, job *registry.Job[probeFields]) (*task.Result, error) {
		q := job.Task.QueueName
		mu.Lock()
		running[q]++
		peak[q] = max(peak[q], running[q])
		mu.Unlock()
		defer func() {
			mu.Lock()
			running[q]--
			mu.Unlock()
		}()
		select {
		case <-time.After(100 * time.Millisecond):
			return &task.Result{}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}})
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
	mu.Lock()
	defer mu.Unlock()
	t.Logf("peak running by queue: %v", peak)
	if peak["gpu"] != 1 {
		t.Errorf("at most %d gpu tasks ran at once, want exactly 1 (the queue's limit)", peak["gpu"])
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
