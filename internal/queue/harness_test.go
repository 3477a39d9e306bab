package queue_test

import (
	"context"
	"strings"
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
	probe      probeFunc
	timeout    time.Duration // the probe type's default timeout
	atMostOnce bool          // the probe type declares itself at-most-once
	resumable  bool          // the probe resumes lost runs (with the same function)
}

// resumingProbe is a probe processor that also resumes lost runs.
type resumingProbe struct{ fn probeFunc }

// Process implements registry.ProcessorOf.
func (p resumingProbe) Process(ctx context.Context, job *registry.Job[probeFields]) (*task.Result, error) {
	return p.fn(ctx, job)
}

// Resume implements registry.ResumerOf.
func (p resumingProbe) Resume(ctx context.Context, job *registry.Job[probeFields]) (*task.Result, error) {
	return p.fn(ctx, job)
}

func newHarness(t *testing.T, dialect string, o opts) *harness {
	t.Helper()
	if o.probe == nil {
		o.probe = succeed
	}
	reg := registry.New()
	reg.MustRegister(echo.Type())
	probe := probeType(o.probe, o.timeout)
	probe.AtMostOnce = o.atMostOnce
	if o.resumable {
		probe.Processor = resumingProbe{o.probe}
	}
	reg.MustRegister(probe)
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
	for _, e := range h.progressDetails(id) {
		out = append(out, e.progress)
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

// dialectCase is one test of a table run against every database.
type dialectCase struct {
	name string
	run  func(t *testing.T, dialect string)
}

// runPerDialect runs every case against every database, all in parallel.
func runPerDialect(t *testing.T, tests []dialectCase) {
	t.Helper()
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
