package executor

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// Limits are an executor's limits from the config file, which every worker
// process of a deployment keeps together (the claim counts the running
// tasks of every process; the Gate is the task store).
type Limits struct {
	// Concurrency is the most tasks running on the executor at once; a
	// task is claimed only while its executor has room. 0: no limit (a
	// comfyui executor's default is its servers' slots).
	Concurrency int `json:"concurrency,omitempty"`
	// StartsPerMinute is the most jobs the executor starts in any minute;
	// 0: no limit.
	StartsPerMinute int `json:"starts_per_minute,omitempty"`
	// Batch gathers compatible jobs into one unit of an executor that is
	// a Batcher; zero: no batching.
	Batch Batching `json:"batch,omitzero"`
}

// Capacity is implemented by executors whose own servers bound how many
// jobs they hold at once (a ComfyUI pool's slots): its default
// concurrency.
type Capacity interface {
	Capacity() int
}

// Gate keeps executors within their services' limits for every process:
// it takes starts of a start rate and pauses an executor (its tasks are
// not claimed while paused). The task store is the Gate of a server
// (store.Gates); LocalGate keeps them in one process.
type Gate interface {
	// TakeStart takes one of executor's starts, limited to perMinute in
	// any minute: 0 when taken, else how long until one is free (the
	// executor is then paused until that time).
	TakeStart(ctx context.Context, executor string, perMinute int) (time.Duration, error)
	// PauseExecutor pauses executor until until, recording why.
	PauseExecutor(ctx context.Context, executor string, until time.Time, reason string) error
}

// DefaultPause is how long an executor is paused after a 429 that said
// nothing of when to come back.
const DefaultPause = 10 * time.Second

// shortWait is the longest a run waits in place for a start of its
// executor's rate; a longer wait gives the task back to the queue.
const shortWait = 2 * time.Second

// admit takes a start of executor name for a job about to be started:
// nil when it may start, a *task.DeferError when the executor's start rate
// is used up for longer than shortWait.
func (s *Set) admit(ctx context.Context, name string) error {
	l := s.limits[name]
	if l.StartsPerMinute <= 0 {
		return nil
	}
	for {
		wait, err := s.gate.TakeStart(ctx, name, l.StartsPerMinute)
		if err != nil {
			return fmt.Errorf("taking a start of executor %s: %w", name, err)
		}
		if wait == 0 {
			return nil
		}
		if wait > shortWait {
			return task.Defer(Errorf(RateLimited, "its start rate of %d a minute is used up for %s", l.StartsPerMinute, wait.Round(time.Second)),
				time.Now().Add(wait))
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// pauseOn pauses executor name after its service refused a job with a 429
// (err is RateLimited) for the Retry-After it gave (DefaultPause without
// one), and returns err deferring the task until then: the executor backs
// off, not the task. Other errors come back as they are.
func (s *Set) pauseOn(ctx context.Context, name string, err error) error {
	if err == nil || !Is(err, RateLimited) || ctx.Err() != nil {
		return err
	}
	var d *task.DeferError
	if errors.As(err, &d) {
		return err // admit's: the pause is set already
	}
	after := DefaultPause
	var ra *task.RetryAfterError
	if errors.As(err, &ra) && ra.After > 0 {
		after = ra.After
	}
	until := time.Now().Add(after)
	if perr := s.gate.PauseExecutor(ctx, name, until, "the service answered 429"); perr != nil {
		// Not paused: the task still waits, as a retry would.
		return task.RetryAfter(err, after)
	}
	return task.Defer(err, until)
}

// LocalGate is a Gate for one process: start rates and pauses in memory.
// It is what a Set uses until UseGate gives it the store's.
type LocalGate struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	paused  map[string]time.Time
	now     func() time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

// NewLocalGate returns an empty LocalGate.
func NewLocalGate() *LocalGate {
	return &LocalGate{buckets: map[string]*bucket{}, paused: map[string]time.Time{}, now: time.Now}
}

// TakeStart implements Gate.
func (g *LocalGate) TakeStart(_ context.Context, executor string, perMinute int) (time.Duration, error) {
	if perMinute <= 0 {
		return 0, nil
	}
	burst, rate := store.StartBucket(perMinute)
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	b, ok := g.buckets[executor]
	if !ok {
		b = &bucket{tokens: burst, at: now}
		g.buckets[executor] = b
	}
	b.tokens = math.Min(burst, b.tokens+now.Sub(b.at).Seconds()*rate)
	b.at = now
	if b.tokens >= 1 {
		b.tokens--
		return 0, nil
	}
	wait := max(time.Duration((1-b.tokens)/rate*float64(time.Second)).Round(time.Millisecond), time.Millisecond)
	if until := now.Add(wait); until.After(g.paused[executor]) {
		g.paused[executor] = until
	}
	return wait, nil
}

// PauseExecutor implements Gate.
func (g *LocalGate) PauseExecutor(_ context.Context, executor string, until time.Time, _ string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if until.After(g.paused[executor]) {
		g.paused[executor] = until
	}
	return nil
}

// PausedUntil returns until when executor is paused (zero when not).
func (g *LocalGate) PausedUntil(executor string) time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	if t := g.paused[executor]; t.After(g.now()) {
		return t
	}
	return time.Time{}
}
