// Package executortest is the harness every executor passes: the same cases
// (success with progress, each failure class, cancel while queued and while
// running, recovery after the process restarts, the service becoming
// unavailable) run against any executor through a small Adapter that says
// how to make its service do each thing. mock and local run it in their
// tests; an executor of a remote service runs it against its fake.
package executortest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/task"
)

// Behaviour is what a job should make the service do.
type Behaviour struct {
	// Fail, when set, makes the job fail with this category.
	Fail executor.Category
	// Hold, when set, makes the job signal Running once it runs and then
	// wait for Release (or for its cancellation).
	Hold *Gate
}

// Adapter drives one executor and its service for the harness.
type Adapter struct {
	// New returns an executor of the service, as a freshly started worker
	// process would build it: a second call stands for a restart, over the
	// same service. The service runs one job at a time when CanQueue.
	New func(t *testing.T) executor.Executor
	// Job returns a job that makes the service behave as b asks. The
	// harness fills Put and SaveHandle when they are nil.
	Job func(t *testing.T, b Behaviour) *executor.Job
	// Failures are the categories Job can make the service fail with.
	Failures []executor.Category
	// CanQueue says the service queues a job while its one slot is busy,
	// for the cancel-while-queued case.
	CanQueue bool
	// SurvivesRestart says a job outlives the process that started it, so
	// Recover re-attaches to it; otherwise Recover must report it lost and
	// Execute starts it afresh.
	SurvivesRestart bool
	// Submissions, when set, counts the jobs the service accepted.
	Submissions func() int
	// SetAvailable, when set, takes the service down (false) or up.
	SetAvailable func(t *testing.T, up bool)
}

// Gate holds a job while it runs.
type Gate struct {
	running, release chan struct{}
	onceRun, onceRel sync.Once
}

// NewGate returns a closed gate.
func NewGate() *Gate { return &Gate{running: make(chan struct{}), release: make(chan struct{})} }

// Running is called by the service when the job runs; it may be called
// again when a recovered job runs on.
func (g *Gate) Running() { g.onceRun.Do(func() { close(g.running) }) }

// Release lets the held job finish.
func (g *Gate) Release() { g.onceRel.Do(func() { close(g.release) }) }

// Wait blocks the job until Release or until ctx ends.
func (g *Gate) Wait(ctx context.Context) error {
	select {
	case <-g.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitRunning waits for the job to run, failing the test after a while.
func (g *Gate) waitRunning(t *testing.T) {
	t.Helper()
	select {
	case <-g.running:
	case <-time.After(10 * time.Second):
		t.Fatal("the held job never ran")
	}
}

// Run runs every case against the adapter's executor.
func Run(t *testing.T, a Adapter) {
	t.Helper()
	t.Run("SucceedsWithProgress", func(t *testing.T) { testSuccess(t, a) })
	t.Run("FailureClasses", func(t *testing.T) { testFailures(t, a) })
	t.Run("CancelRunning", func(t *testing.T) { testCancelRunning(t, a) })
	t.Run("CancelQueued", func(t *testing.T) { testCancelQueued(t, a) })
	t.Run("RecoverAfterRestart", func(t *testing.T) { testRecover(t, a) })
	t.Run("Unavailable", func(t *testing.T) { testUnavailable(t, a) })
}

// recorder keeps what a job stored and reported.
type recorder struct {
	mu       sync.Mutex
	files    map[string][]byte
	handles  []executor.Handle
	progress []float64
}

// job returns the adapter's job for b, with Put and SaveHandle recording
// into a new recorder.
func job(t *testing.T, a Adapter, b Behaviour) (*executor.Job, *recorder) {
	t.Helper()
	j := a.Job(t, b)
	if j.TaskID == uuid.Nil {
		j.TaskID = uuid.New()
	}
	r := &recorder{files: map[string][]byte{}}
	if j.Put == nil {
		j.Put = r.put
	}
	if j.SaveHandle == nil {
		j.SaveHandle = func(_ context.Context, h executor.Handle) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.handles = append(r.handles, h)
			return nil
		}
	}
	return j, r
}

func (r *recorder) put(_ context.Context, name, contentType string, data []byte) (task.Artifact, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.files[name] = append([]byte(nil), data...)
	return task.Artifact{Key: "test/" + name, ContentType: contentType, Size: int64(len(data))}, nil
}

// Progress implements executor.Reporter.
func (r *recorder) Progress(_ context.Context, pct float64, _ string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.progress = append(r.progress, pct)
	return nil
}

func (r *recorder) snapshot() (files map[string][]byte, handles []executor.Handle, progress []float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.files, append([]executor.Handle(nil), r.handles...), append([]float64(nil), r.progress...)
}

// ctx returns a context that ends with the test or after a minute.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return c
}
