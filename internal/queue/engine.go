// Package queue is the execution engine: workers claim due tasks from the
// task table (the table is the queue), run their processors, and finish each
// attempt through the store's conditional SetStatus.
package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// Config configures an Engine. Zero values take the documented defaults.
type Config struct {
	// Instance names this worker in executor_instance (default
	// hostname-pid-random).
	Instance string
	// Concurrency is the number of tasks run at once (default 8).
	Concurrency int
	// Lease is how long a claim lasts without renewal (default 30s).
	Lease time.Duration
	// PollInterval is how often an idle engine looks for due tasks that
	// no wake-up announced, such as delayed ones (default 1s).
	PollInterval time.Duration
	// ProgressInterval is the minimum time between two progress events of
	// one task (default 500ms); the final 100% always gets one.
	ProgressInterval time.Duration
	// ShutdownGrace is how long Stop waits for running tasks before
	// cancelling them (default 30s).
	ShutdownGrace time.Duration
	// Queues limits the engine to these queues (default: all).
	Queues []string
	// PublicBaseURL prefixes artifact URLs (e.g. http://127.0.0.1:9000).
	PublicBaseURL string
}

func (c *Config) setDefaults() {
	if c.Instance == "" {
		host, _ := os.Hostname()
		c.Instance = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), uuid.NewString()[:8])
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 8
	}
	if c.Lease <= 0 {
		c.Lease = 30 * time.Second
	}
	if c.PollInterval <= 0 {
		c.PollInterval = time.Second
	}
	if c.ProgressInterval <= 0 {
		c.ProgressInterval = 500 * time.Millisecond
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = 30 * time.Second
	}
}

// Engine claims and runs tasks.
type Engine struct {
	cfg       Config
	store     store.Store
	reg       *registry.Registry
	artifacts artifact.Store
	log       *slog.Logger

	wake  chan struct{}
	slots chan struct{}

	mu      sync.Mutex
	running map[uuid.UUID]context.CancelCauseFunc
	stop    context.CancelFunc
	done    chan struct{}
	runs    sync.WaitGroup
	// runCtx is cancelled when the grace period ends.
	runCancel context.CancelFunc
}

// New returns an engine; call Start to run it.
func New(cfg Config, st store.Store, reg *registry.Registry, artifacts artifact.Store, log *slog.Logger) *Engine {
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Engine{
		cfg:       cfg,
		store:     st,
		reg:       reg,
		artifacts: artifacts,
		log:       log.With("component", "queue", "instance", cfg.Instance),
		wake:      make(chan struct{}, 1),
		slots:     make(chan struct{}, cfg.Concurrency),
		running:   map[uuid.UUID]context.CancelCauseFunc{},
	}
}

// Instance returns the name this engine writes into executor_instance.
func (e *Engine) Instance() string { return e.cfg.Instance }

// Notify wakes the engine to look for work now (for example after a create).
// It never blocks.
func (e *Engine) Notify() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// errCancelled is the cause given to a run's context when its task is
// cancelled.
var errCancelled = errors.New("task cancelled")

// Cancel cancels the processor of the task if it runs in this engine and
// reports whether it did.
func (e *Engine) Cancel(id uuid.UUID) bool {
	e.mu.Lock()
	cancel, ok := e.running[id]
	e.mu.Unlock()
	if ok {
		cancel(errCancelled)
	}
	return ok
}

// Start begins claiming tasks in the background. It returns an error if the
// engine is already running.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stop != nil {
		return errors.New("queue: engine already started")
	}
	loopCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	runCtx, runCancel := context.WithCancel(context.WithoutCancel(ctx))
	e.stop, e.runCancel, e.done = stop, runCancel, make(chan struct{})
	go e.loop(loopCtx, runCtx)
	e.log.Info("engine started", "concurrency", e.cfg.Concurrency)
	return nil
}

// Stop stops claiming, waits up to the shutdown grace period for running
// tasks, then cancels the rest and waits for them to return. It is
// idempotent.
func (e *Engine) Stop() {
	e.mu.Lock()
	stop, done, runCancel := e.stop, e.done, e.runCancel
	e.mu.Unlock()
	if stop == nil {
		return
	}
	stop()
	<-done
	finished := make(chan struct{})
	go func() { e.runs.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(e.cfg.ShutdownGrace):
		e.log.Warn("shutdown grace period over; cancelling running tasks")
		runCancel()
		<-finished
	}
	runCancel()
}

func (e *Engine) loop(ctx, runCtx context.Context) {
	defer close(e.done)
	ticker := time.NewTicker(e.cfg.PollInterval)
	defer ticker.Stop()
	for {
		free := cap(e.slots) - len(e.slots)
		claimed := 0
		if free > 0 {
			recs, err := e.store.ClaimTasks(ctx, store.ClaimParams{
				Worker: e.cfg.Instance, Limit: free, Lease: e.cfg.Lease, Queues: e.cfg.Queues,
			})
			if err != nil && ctx.Err() == nil {
				e.log.Error("claiming tasks", "error", err)
			}
			for _, rec := range recs {
				e.slots <- struct{}{}
				e.runs.Add(1)
				go e.run(runCtx, rec)
			}
			claimed = len(recs)
		}
		if claimed > 0 && claimed == free {
			// There may be more work; look again as soon as a slot frees.
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-e.wake:
		case <-ticker.C:
		}
	}
}

// run executes one attempt and records its outcome.
func (e *Engine) run(parent context.Context, rec *store.Record) {
	t := rec.Task
	defer func() {
		<-e.slots
		e.runs.Done()
		e.Notify() // a slot is free
	}()
	log := e.log.With("task_id", t.ID, "task_type", t.Type, "attempt", t.Attempt)

	ctx, cancel := context.WithCancelCause(parent)
	e.mu.Lock()
	e.running[t.ID] = cancel
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.running, t.ID)
		e.mu.Unlock()
		cancel(nil)
	}()
	timeout := time.Duration(t.TimeoutSeconds) * time.Second
	if timeout <= 0 {
		timeout = rec.Def.Timeout
	}
	runCtx, cancelTimeout := context.WithTimeout(ctx, timeout)
	defer cancelTimeout()

	env := &runtime{e: e, rec: rec}
	result, err := safeProcess(runCtx, rec, env)
	// Outcome writes must not be cut short by the run's own context.
	finishCtx, cancelFinish := context.WithTimeout(context.WithoutCancel(parent), 30*time.Second)
	defer cancelFinish()
	if err == nil {
		e.complete(finishCtx, log, rec, result)
		return
	}
	e.fail(finishCtx, log, rec, runCtx, ctx, err)
}

// safeProcess runs the processor, turning a panic into a permanent error so
// one bad task cannot take the worker down.
func safeProcess(ctx context.Context, rec *store.Record, env registry.Runtime) (res *task.Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = task.Permanent(fmt.Errorf("processor panicked: %v", p))
		}
	}()
	return rec.Def.Processor.Process(ctx, &registry.Run{Task: rec.Task, Fields: rec.Fields, Env: env})
}

func (e *Engine) complete(ctx context.Context, log *slog.Logger, rec *store.Record, result *task.Result) {
	if result == nil {
		result = &task.Result{}
	}
	if result.Artifacts == nil {
		result.Artifacts = []task.Artifact{}
	}
	raw, err := json.Marshal(result)
	if err != nil {
		e.fail(ctx, log, rec, ctx, ctx, task.Permanent(fmt.Errorf("encoding result: %w", err)))
		return
	}
	_, _, err = e.store.SetStatus(ctx, store.StatusChange{
		TaskID: rec.Task.ID, To: task.StatusCompleted, Scope: store.AdminScope, Attempt: rec.Task.Attempt, Result: raw,
	})
	e.logOutcome(log, "completed", err)
}

func (e *Engine) fail(ctx context.Context, log *slog.Logger, rec *store.Record, runCtx, taskCtx context.Context, err error) {
	t := rec.Task
	category := task.CategoryProcessor
	retryable := !task.IsPermanent(err)
	switch {
	case context.Cause(taskCtx) == errCancelled:
		// The API already moved the task to cancelled; nothing to record.
		log.Info("run cancelled")
		return
	case errors.Is(runCtx.Err(), context.DeadlineExceeded) && taskCtx.Err() == nil:
		category, retryable = task.CategoryTimeout, false
		err = fmt.Errorf("execution timed out after %ds: %w", t.TimeoutSeconds, err)
	case taskCtx.Err() != nil:
		// The engine is shutting down: give the task back.
		_, _, serr := e.store.SetStatus(ctx, store.StatusChange{
			TaskID: t.ID, To: task.StatusPending, Scope: store.AdminScope, Attempt: t.Attempt,
		})
		e.logOutcome(log, "released at shutdown", serr)
		return
	case !retryable:
		category = task.CategoryPermanent
	}
	entry := &task.Error{Attempt: t.Attempt, Message: err.Error(), Category: category}
	if retryable && t.Attempt < t.MaxAttempts {
		at := task.Now().Add(backoff(t.Attempt, err))
		_, _, serr := e.store.SetStatus(ctx, store.StatusChange{
			TaskID: t.ID, To: task.StatusPending, Scope: store.AdminScope, Attempt: t.Attempt,
			Err: entry, CountRetry: true, RunAt: &at,
		})
		e.logOutcome(log.With("error", err, "retry_at", at), "retry scheduled", serr)
		return
	}
	_, _, serr := e.store.SetStatus(ctx, store.StatusChange{
		TaskID: t.ID, To: task.StatusFailed, Scope: store.AdminScope, Attempt: t.Attempt, Err: entry, CountRetry: true,
	})
	e.logOutcome(log.With("error", err, "error_category", category), "failed", serr)
}

func (e *Engine) logOutcome(log *slog.Logger, what string, err error) {
	switch {
	case err == nil:
		log.Info("task " + what)
	case errors.Is(err, task.ErrStaleRun), errors.Is(err, task.ErrIllegalTransition):
		// Another actor (a cancel, a rescue) changed the task first; the
		// conditional write refused ours, which is the point.
		log.Info("outcome not recorded: task changed meanwhile", "outcome", what, "reason", err)
	default:
		log.Error("recording outcome", "outcome", what, "error", err)
	}
}

// backoff is the delay before retry number attempt: exponential from 1s,
// capped at 10 minutes, with full jitter on the upper half; a processor's
// RetryAfter is a floor.
func backoff(attempt int, err error) time.Duration {
	d := time.Second << min(attempt-1, 10)
	d = min(d, 10*time.Minute)
	d = d/2 + rand.N(d/2+1)
	var ra *task.RetryAfterError
	if errors.As(err, &ra) && ra.After > d {
		d = ra.After
	}
	return d
}
