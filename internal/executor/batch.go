package executor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/telemetry"
)

// Batcher is implemented by executors that can run compatible jobs as one
// unit (a ComfyUI prompt with batch_size N). Wait, Cancel and Recover take
// a member's handle, whose State records the batch; Wait stores only that
// member's outputs.
type Batcher interface {
	// BatchKey returns the key of the jobs job may run with: jobs with
	// equal keys may run as one batch. ok is false when job cannot batch.
	BatchKey(job *Job) (key string, ok bool)
	// StartBatch submits jobs as one unit and returns one Handle per job,
	// in order. Each job's SaveHandle is called before the service can run
	// it, as Start does for a single job. When only some jobs could not be
	// started the error is a *BatchError; any other error is every job's.
	StartBatch(ctx context.Context, jobs []*Job) ([]Handle, error)
}

// BatchError is StartBatch's error when some of its jobs were started and
// others not (their handle could not be saved: the task was cancelled
// meanwhile). Errs[i] is job i's error, nil for a job whose handle is
// valid.
type BatchError struct {
	Errs []error
}

// Error implements error.
func (e *BatchError) Error() string {
	n := 0
	var first error
	for _, err := range e.Errs {
		if err != nil {
			n++
			if first == nil {
				first = err
			}
		}
	}
	return fmt.Sprintf("%d of %d jobs of the batch were not started: %v", n, len(e.Errs), first)
}

// Batching is an executor's batching from the config file's `batch:`
// (`{max_size: N, max_wait: "500ms"}`).
type Batching struct {
	// MaxSize is the most jobs in one batch; 0 or 1: no batching.
	MaxSize int `json:"max_size,omitempty"`
	// MaxWait is how long a batch waits for more jobs after its first
	// joined before it starts with those it has. It must be more than 0
	// when MaxSize is more than 1: with no wait every batch starts with
	// the job that opened it, alone. The config file's default is
	// DefaultBatchWait.
	MaxWait time.Duration `json:"max_wait,omitempty"`
}

// Limits of the batching settings.
const (
	MaxBatchSize = 64
	MaxBatchWait = time.Minute
	// DefaultBatchWait is the max_wait of a `batch:` that names none.
	DefaultBatchWait = 500 * time.Millisecond
)

// Validate reports a setting out of range, naming it.
func (b Batching) Validate() error {
	switch {
	case b.MaxSize < 0 || b.MaxSize > MaxBatchSize:
		return fmt.Errorf("batch.max_size: want 1 to %d, got %d", MaxBatchSize, b.MaxSize)
	case b.MaxWait < 0 || b.MaxWait > MaxBatchWait:
		return fmt.Errorf("batch.max_wait: want 0s to %s, got %s", MaxBatchWait, b.MaxWait)
	case b.MaxSize > 1 && b.MaxWait == 0:
		// Every batch would start at once with its first job, alone,
		// while the claims count max_size jobs per slot.
		return fmt.Errorf("batch.max_wait: want more than 0s when max_size is %d (with no wait every batch starts with its first job alone); omit it for %s", b.MaxSize, DefaultBatchWait)
	}
	return nil
}

// collector gathers the jobs of a Set that may batch into open batches,
// one per executor and batch key, and starts each when it is full or its
// wait is over.
type collector struct {
	mu   sync.Mutex
	open map[string]*openBatch
}

// openBatch is a batch being gathered or being started.
type openBatch struct {
	key     string
	ex      Executor
	b       Batcher
	admit   func(ctx context.Context) error
	members []*member
	timer   *time.Timer
	// closed: started (or abandoned); no job joins any more.
	closed bool
}

// member is one job waiting in a batch for its handle.
type member struct {
	job  *Job
	ctx  context.Context
	done chan struct{}
	h    Handle
	err  error
	// gone: the member's run ended after the batch began starting; its
	// handle, when one comes, is cancelled.
	gone bool
}

func newCollector() *collector { return &collector{open: map[string]*openBatch{}} }

// join starts job on ex as a member of a batch of compatible jobs (see
// Batcher) and returns its handle: the job joins the open batch of its key
// and tenant (a new one when none is open), which is started when it has
// cfg.MaxSize members or cfg.MaxWait after its first joined. admit, when
// set, is asked once per batch. A job that cannot batch, or a batch of
// one, is started with Start. When ctx ends before the batch starts, the job leaves it.
func (c *collector) join(ctx context.Context, ex Executor, cfg Batching, job *Job, admit func(context.Context) error) (Handle, error) {
	b, ok := ex.(Batcher)
	var key string
	if ok {
		key, ok = b.BatchKey(job)
	}
	if !ok || cfg.MaxSize <= 1 {
		if admit != nil {
			if err := admit(ctx); err != nil {
				return Handle{}, err
			}
		}
		return ex.Start(ctx, job)
	}
	// Only one tenant's jobs share a batch: the batch reads its inputs on
	// behalf of one member's tenant.
	key = fmt.Sprintf("%s\x00%q\x00%s", ex.Name(), job.Tenant, key)
	m := &member{job: job, ctx: ctx, done: make(chan struct{})}
	c.mu.Lock()
	ob := c.open[key]
	if ob == nil {
		ob = &openBatch{key: key, ex: ex, b: b, admit: admit}
		c.open[key] = ob
		ob.timer = time.AfterFunc(cfg.MaxWait, func() { c.launch(ob) })
	}
	ob.members = append(ob.members, m)
	full := len(ob.members) >= cfg.MaxSize
	if full {
		delete(c.open, key) // later jobs open a new batch
	}
	c.mu.Unlock()
	if full {
		go c.launch(ob)
	}
	select {
	case <-m.done:
		return m.h, m.err
	case <-ctx.Done():
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-m.done:
		return m.h, m.err
	default:
	}
	if ob.closed {
		m.gone = true // the start delivers, and cancels, its handle
		return Handle{}, ctx.Err()
	}
	for i, x := range ob.members {
		if x == m {
			ob.members = append(ob.members[:i], ob.members[i+1:]...)
			break
		}
	}
	if len(ob.members) == 0 {
		c.closeLocked(ob)
	}
	return Handle{}, ctx.Err()
}

// closeLocked closes ob to new members; c.mu must be held.
func (c *collector) closeLocked(ob *openBatch) {
	ob.closed = true
	ob.timer.Stop()
	if c.open[ob.key] == ob {
		delete(c.open, ob.key)
	}
}

// launch starts ob with the members it has, unless it was started
// already or every member left.
func (c *collector) launch(ob *openBatch) {
	c.mu.Lock()
	if ob.closed {
		c.mu.Unlock()
		return
	}
	c.closeLocked(ob)
	members := append([]*member(nil), ob.members...)
	c.mu.Unlock()
	if len(members) == 0 {
		return
	}
	// The start's context ends when every member's has: a batch nobody
	// waits for any more is not submitted.
	ctx, cancel := context.WithCancel(context.WithoutCancel(members[0].ctx))
	defer cancel()
	var left atomic.Int32
	left.Store(int32(len(members)))
	for _, m := range members {
		stop := context.AfterFunc(m.ctx, func() {
			if left.Add(-1) == 0 {
				cancel()
			}
		})
		defer stop()
	}
	ctx, span := telemetry.Start(ctx, "executor.start_batch",
		attribute.String("executor", ob.ex.Name()), attribute.Int("batch_size", len(members)))
	defer span.End()
	hs, err := c.start(ctx, ob, members)
	endSpan(span, err)
	var xe *Error
	if errors.As(err, &xe) && xe.Executor == "" {
		// Every member's Execute names the executor in the error they
		// share: do it once, before they read it.
		xe.Executor = ob.ex.Name()
	}
	var be *BatchError
	for i, m := range members {
		h, merr := Handle{}, err
		switch {
		case err == nil:
			h = hs[i]
		case errors.As(err, &be) && i < len(be.Errs) && i < len(hs):
			if merr = be.Errs[i]; merr == nil {
				h = hs[i]
			}
		}
		c.deliver(ob.ex, m, h, merr)
	}
}

// start admits the batch and submits it: with StartBatch, or Start for a
// batch of one.
func (c *collector) start(ctx context.Context, ob *openBatch, members []*member) ([]Handle, error) {
	if ob.admit != nil {
		if err := ob.admit(ctx); err != nil {
			return nil, err
		}
	}
	if len(members) == 1 {
		h, err := ob.ex.Start(ctx, members[0].job)
		return []Handle{h}, err
	}
	jobs := make([]*Job, len(members))
	for i, m := range members {
		jobs[i] = m.job
	}
	hs, err := ob.b.StartBatch(ctx, jobs)
	if err == nil && len(hs) != len(jobs) {
		return nil, fmt.Errorf("executor %s started a batch of %d jobs with %d handles", ob.ex.Name(), len(jobs), len(hs))
	}
	return hs, err
}

// deliver hands a member its handle or error; the handle of a member
// whose run is gone is cancelled (for a batch, that member's part),
// unless the run lost its claim (task.ErrRunLost): the task's new run may
// re-attach to the job, as in wait.
func (c *collector) deliver(ex Executor, m *member, h Handle, err error) {
	c.mu.Lock()
	gone := m.gone
	m.h, m.err = h, err
	close(m.done)
	c.mu.Unlock()
	if gone && err == nil && h.ExternalID != "" && !errors.Is(context.Cause(m.ctx), task.ErrRunLost) {
		if h.Executor == "" {
			h.Executor = ex.Name()
		}
		if h.Version == 0 {
			h.Version = HandleVersion
		}
		cancelDetached(m.ctx, ex, h)
	}
}
