// Package inproc is the job table of executors that do their work inside
// the worker process (mock, local): ids, a slot limit with a queue,
// cancellation of a queued or running job, and a switch that makes the
// "service" unavailable. A table shared by two executor values stands for
// a service that outlives one of them, which is how the executor harness
// exercises recovery on in-process executors.
package inproc

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/executor"
)

// State is where a job is.
type State string

// The states of a job in the table.
const (
	Queued  State = "queued"
	Running State = "running"
)

// Jobs is a table of in-process jobs. Its methods are safe for concurrent
// use.
type Jobs struct {
	slots chan struct{} // nil: no limit
	down  atomic.Bool
	subs  atomic.Int64

	mu   sync.Mutex
	jobs map[string]*entry
	// gone remembers the queued jobs Cancel removed, so a Wait that comes
	// after the cancel reports it cancelled rather than lost. It is
	// bounded by maxGone.
	gone map[string]struct{}
}

// maxGone bounds the cancelled jobs remembered; past it the memory
// starts over (a Wait that late reports its job lost).
const maxGone = 4096

type entry struct {
	state     State
	cancelled chan struct{} // closed by Cancel
	stop      context.CancelCauseFunc
}

// errCancelled is the cause a cancel gives a running job's context.
var errCancelled = errors.New("job cancelled")

// New returns a table running at most slots jobs at once (0: no limit).
func New(slots int) *Jobs {
	j := &Jobs{jobs: map[string]*entry{}, gone: map[string]struct{}{}}
	if slots > 0 {
		j.slots = make(chan struct{}, slots)
	}
	return j
}

// SetDown makes Submit fail as the service being unavailable (down) or
// accept jobs again.
func (j *Jobs) SetDown(down bool) { j.down.Store(down) }

// Submissions counts the jobs Submit accepted.
func (j *Jobs) Submissions() int { return int(j.subs.Load()) }

// Ping fails as the service being unavailable while the table is down.
func (j *Jobs) Ping() error {
	if j.down.Load() {
		return executor.Errorf(executor.ProviderUnavailable, "the executor is marked unavailable")
	}
	return nil
}

// Submit adds a queued job and returns its id.
func (j *Jobs) Submit() (string, error) {
	if err := j.Ping(); err != nil {
		return "", err
	}
	id := uuid.NewString()
	j.mu.Lock()
	j.jobs[id] = &entry{state: Queued, cancelled: make(chan struct{})}
	j.mu.Unlock()
	j.subs.Add(1)
	return id, nil
}

// State returns the state of job id; ok is false for a job the table does
// not know (never submitted, or ended).
func (j *Jobs) State(id string) (s State, ok bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	e, ok := j.jobs[id]
	if !ok {
		return "", false
	}
	return e.state, true
}

// Run waits for a slot, then runs fn as job id with a context that Cancel
// ends. When fn returns, the job ends and leaves the table. When ctx ends
// first (the caller stopped waiting, as a process dies), the job stays in
// the table, queued again, so it can be recovered. An unknown job is an
// error of category lost; a cancelled one of category cancelled.
func (j *Jobs) Run(ctx context.Context, id string, fn func(ctx context.Context) error) error {
	j.mu.Lock()
	e, ok := j.jobs[id]
	_, cancelled := j.gone[id]
	j.mu.Unlock()
	switch {
	case cancelled:
		return executor.Errorf(executor.Cancelled, "job %s cancelled while queued", id)
	case !ok:
		return executor.Errorf(executor.Lost, "job %s is not known", id)
	}
	if j.slots != nil {
		select {
		case j.slots <- struct{}{}:
			defer func() { <-j.slots }()
		case <-e.cancelled:
			j.forget(id)
			return executor.Errorf(executor.Cancelled, "job %s cancelled while queued", id)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	runCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	j.mu.Lock()
	select {
	case <-e.cancelled:
		j.mu.Unlock()
		j.forget(id)
		return executor.Errorf(executor.Cancelled, "job %s cancelled while queued", id)
	default:
	}
	e.state, e.stop = Running, stop
	j.mu.Unlock()

	err := fn(runCtx)
	if errors.Is(context.Cause(runCtx), errCancelled) {
		j.forget(id)
		return executor.Errorf(executor.Cancelled, "job %s cancelled while running", id)
	}
	if err != nil && ctx.Err() != nil {
		j.mu.Lock()
		e.state, e.stop = Queued, nil
		j.mu.Unlock()
		return err
	}
	j.forget(id)
	return err
}

// Cancel cancels job id, queued or running; a job the table does not know
// (it ended) is not an error.
func (j *Jobs) Cancel(id string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	e, ok := j.jobs[id]
	if !ok {
		return
	}
	select {
	case <-e.cancelled:
	default:
		close(e.cancelled)
	}
	if e.stop != nil {
		e.stop(errCancelled) // Run forgets the job
		return
	}
	// Queued: a Run waiting for a slot sees the close; one that comes
	// later finds the job gone.
	delete(j.jobs, id)
	if len(j.gone) >= maxGone {
		clear(j.gone)
	}
	j.gone[id] = struct{}{}
}

func (j *Jobs) forget(id string) {
	j.mu.Lock()
	delete(j.jobs, id)
	j.mu.Unlock()
}

// Recover returns h when the table knows its job, else an error of
// category lost.
func (j *Jobs) Recover(h executor.Handle) (executor.Handle, error) {
	if h.Version != executor.HandleVersion {
		return h, executor.Errorf(executor.Lost, "handle version %d is not %d", h.Version, executor.HandleVersion)
	}
	if _, ok := j.State(h.ExternalID); !ok {
		return h, executor.Errorf(executor.Lost, "job %s is not known to this executor (it ran in a process that ended)", h.ExternalID)
	}
	return h, nil
}
