// Package queue is the execution engine: workers claim due tasks from the
// task table (the table is the queue), run their processors under a lease
// they keep renewing, and record each attempt's outcome through the store's
// conditional writes, in batches.
package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
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
	// hostname-pid-random). Two live engines must never share it: Start
	// treats every task still executing under it as left by a previous
	// incarnation of this process, and recovers it at once (see
	// AcquireIdentity for a stable one).
	Instance string
	// Concurrency is the number of tasks run at once (default 8).
	Concurrency int
	// Lease is how long a claim lasts without renewal (default 30s). A
	// dead worker's tasks are rescued within about one lease.
	Lease time.Duration
	// Heartbeat is how often running tasks' leases are renewed (default
	// Lease/3). Progress reports renew them too.
	Heartbeat time.Duration
	// PollInterval is how often an idle engine looks for due tasks that
	// no wake-up announced, such as delayed ones (default 1s).
	PollInterval time.Duration
	// MaintenanceInterval is how often the engine rescues expired leases
	// and fails overdue tasks (default 5s, or Lease/2 if shorter). Every
	// node may do it.
	MaintenanceInterval time.Duration
	// MaxResumes is how often a task is recovered (re-queued, or resumed
	// when its processor can re-attach) after losing its worker, counted
	// in resume_attempt_count apart from max_attempts (default 3;
	// negative: never, the task fails with category "lost").
	MaxResumes int
	// ProgressInterval is the minimum time between two progress events of
	// one task (default 500ms). A report at 100% always gets one, and so
	// does the last report of a burst: a throttled report is emitted when
	// the interval has passed unless a newer event supersedes it.
	ProgressInterval time.Duration
	// ShutdownGrace is how long Stop waits for running tasks before
	// cancelling them and releasing their leases (default 30s).
	ShutdownGrace time.Duration
	// Queues limits the engine to these queues (default: all).
	Queues []string
	// ExecutorLimits bounds how many tasks run at once on each executor,
	// over every process (store.ClaimParams.ExecutorLimits).
	ExecutorLimits map[string]int
	// PublicBaseURL prefixes artifact URLs (e.g. http://127.0.0.1:9000).
	PublicBaseURL string
	// ArtifactsPublicURL, when set, is the base of artifact URLs instead
	// (a public or CDN view of the artifact store; artifact.URL).
	ArtifactsPublicURL string
	// Completers is how many batches of outcomes are written at once
	// (default 1). One is best on both databases today: SQLite has one
	// writer, and on PostgreSQL every batch's events take the event-order
	// lock, so more writers make more, smaller batches that queue on it
	// (docs/performance.md has the measurements).
	Completers int
	// Observer, when set, is told of every run (the Prometheus metrics).
	Observer Observer
}

// Observer watches runs, for metrics. Its methods are called on the run's
// goroutine and must not block.
type Observer interface {
	// RunStarted is called when a run of t starts, pickup after the task
	// became due (its run_at, or its creation when later).
	RunStarted(t *task.Task, pickup time.Duration)
	// RunEnded is called when a run of t ends after took, with its
	// outcome: completed, failed, retried, deferred, released, cancelled
	// or lost. A written outcome is reported once written; an outcome the
	// store refused (the task changed meanwhile) as lost. usage is what
	// the run's services reported spending, as written with the outcome
	// (zero when nothing was written).
	RunEnded(t *task.Task, outcome string, took time.Duration, usage task.Usage)
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
	if c.Heartbeat <= 0 {
		c.Heartbeat = c.Lease / 3
	}
	if c.PollInterval <= 0 {
		c.PollInterval = time.Second
	}
	if c.MaintenanceInterval <= 0 {
		c.MaintenanceInterval = min(5*time.Second, c.Lease/2)
	}
	if c.MaxResumes == 0 {
		c.MaxResumes = 3
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
	store     store.Queue
	reg       *registry.Registry
	artifacts artifact.Store
	log       *slog.Logger

	wake  chan struct{}
	slots chan struct{}
	done  chan outcome

	mu      sync.Mutex
	running map[uuid.UUID]*activeRun
	// early holds cancels heard for tasks this engine runs no run of (yet):
	// a claim commits before its run registers, so a cancel can arrive in
	// between. A run that registers checks it (cancelledEarly).
	early          map[uuid.UUID]time.Time
	stop           func()
	stopBackground func()
	claimDone      sync.WaitGroup
	loopsDone      sync.WaitGroup
	runs           sync.WaitGroup
	runCancel      context.CancelFunc
	stopped        bool
	compDone       chan struct{}
	// abandon is closed when the shutdown grace is over: outcome writes
	// still failing then are given up.
	abandon chan struct{}
	// lastFailure is when a store call last failed (unix nanoseconds).
	lastFailure atomic.Int64
}

// activeRun is a run in progress, for heartbeats and cancellation.
type activeRun struct {
	rec    *store.Record
	cancel context.CancelCauseFunc
	env    *runtime
	// phase is where the run is: running its processor, writing its
	// outcome, or retrying that write after a failure.
	phase atomic.Int32
}

// Phases of an activeRun.
const (
	// phaseRunning: the processor runs; the heartbeat renews the lease.
	phaseRunning int32 = iota
	// phaseWriting: the outcome is being written. The write locks the
	// task row; the heartbeat must not renew (and lock) it at the same
	// time, or the two can deadlock.
	phaseWriting
	// phaseRetrying: the outcome's write failed and is retried; the
	// heartbeat keeps the lease alive meanwhile, so no other node
	// rescues the task and runs it again.
	phaseRetrying
)

// Errors given as the cause of a run's cancelled context.
var (
	errCancelled = errors.New("task cancelled")
	errLost      = fmt.Errorf("lease lost: the task was rescued or changed by another actor: %w", task.ErrRunLost)
	errShutdown  = errors.New("worker shutting down")
)

// New returns an engine; call Start to run it.
func New(cfg Config, st store.Queue, reg *registry.Registry, artifacts artifact.Store, log *slog.Logger) *Engine {
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
		done:      make(chan outcome, cfg.Concurrency),
		running:   map[uuid.UUID]*activeRun{},
		early:     map[uuid.UUID]time.Time{},
		abandon:   make(chan struct{}),
	}
}

// Instance returns the name this engine writes into executor_instance.
func (e *Engine) Instance() string { return e.cfg.Instance }

// Notify wakes the engine to look for work now. It never blocks.
func (e *Engine) Notify() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Cancel cancels the processor of the task if it runs in this engine, pushes
// the cancellation into its executor when the processor supports it, and
// reports whether the task ran here. A cancel for a task with no run here
// is kept for a lease: a claim commits before its run registers, and a
// run that registers with a cancel waiting asks the store whether it
// still owns its task.
func (e *Engine) Cancel(id uuid.UUID) bool {
	e.mu.Lock()
	r, ok := e.running[id]
	if !ok {
		now := time.Now()
		for k, at := range e.early {
			if now.Sub(at) > e.cfg.Lease {
				delete(e.early, k)
			}
		}
		e.early[id] = now
	}
	e.mu.Unlock()
	if !ok || r.phase.Load() != phaseRunning {
		return ok
	}
	if r.rec.Def.Cancellable() {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c := r.rec.Def.Processor.(registry.Canceller)
			if err := c.Cancel(ctx, &registry.Run{Task: r.rec.Task, Fields: r.rec.Fields, Env: r.env}); err != nil {
				e.log.Warn("pushing cancellation into the executor", "task_id", id, "error", err)
			}
		}()
	}
	r.cancel(errCancelled)
	return true
}

// Start begins claiming tasks in the background.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stop != nil {
		return errors.New("queue: engine already started")
	}
	base := context.WithoutCancel(ctx)
	claimCtx, stopClaiming := context.WithCancel(base)
	bgCtx, stopBackground := context.WithCancel(base)
	runCtx, runCancel := context.WithCancelCause(base)
	e.stop = func() {
		stopClaiming()
		e.claimDone.Wait()
	}
	e.stopBackground = func() {
		stopBackground()
		e.loopsDone.Wait()
	}
	e.runCancel = func() { runCancel(errShutdown) }
	notes := e.store.Subscribe(bgCtx)
	e.claimDone.Add(1)
	go func() { defer e.claimDone.Done(); e.claimLoop(claimCtx, runCtx) }()
	e.loopsDone.Add(3)
	go func() { defer e.loopsDone.Done(); e.listen(bgCtx, notes) }()
	go func() { defer e.loopsDone.Done(); e.heartbeatLoop(bgCtx) }()
	go func() { defer e.loopsDone.Done(); e.maintenanceLoop(bgCtx) }()
	e.completerStart()
	e.log.Info("engine started", "concurrency", e.cfg.Concurrency, "lease", e.cfg.Lease)
	return nil
}

// Stop stops claiming, waits up to the shutdown grace period for running
// tasks (their leases are still renewed and cancellations still reach
// them), then cancels the rest, which release their tasks to pending so
// another process takes them at once. It is idempotent.
func (e *Engine) Stop() {
	e.mu.Lock()
	stop, runCancel, stopBackground := e.stop, e.runCancel, e.stopBackground
	already := e.stopped
	e.stopped = true
	e.mu.Unlock()
	if stop == nil || already {
		return
	}
	stop() // no run starts after this returns
	finished := make(chan struct{})
	go func() { e.runs.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(e.cfg.ShutdownGrace):
		e.log.Warn("shutdown grace period over; releasing running tasks")
		close(e.abandon)
		runCancel()
		<-finished
	}
	runCancel()
	e.completerStop()
	stopBackground()
}

// listen turns store notifications into wake-ups and cancellations.
func (e *Engine) listen(ctx context.Context, notes <-chan store.Notification) {
	for {
		select {
		case <-ctx.Done():
			return
		case n := <-notes:
			switch n.Kind {
			case store.NotifyWake:
				e.Notify()
			case store.NotifyCancel:
				e.Cancel(n.TaskID)
			}
		}
	}
}

// claimLoop claims as many tasks as there are free slots whenever woken,
// and at least every PollInterval.
func (e *Engine) claimLoop(ctx, runCtx context.Context) {
	ticker := time.NewTicker(e.cfg.PollInterval)
	defer ticker.Stop()
	// The tasks a previous incarnation left are recovered first: once
	// this engine claims, its own runs carry the same instance.
	for {
		err := e.recoverOwn(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		e.storeFailed()
		e.log.Error("recovering at start; retrying", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
	for {
		free := cap(e.slots) - len(e.slots)
		claimed := 0
		if free > 0 {
			start := time.Now()
			recs, err := e.store.ClaimTasks(ctx, store.ClaimParams{
				Worker: e.cfg.Instance, Limit: free, Lease: e.cfg.Lease, Queues: e.cfg.Queues,
				ExecutorLimits: e.cfg.ExecutorLimits,
			})
			e.storeWaited(start)
			if err != nil && ctx.Err() == nil {
				e.storeFailed()
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
			continue // there may be more work; look again once a slot frees
		}
		select {
		case <-ctx.Done():
			return
		case <-e.wake:
		case <-ticker.C:
		}
	}
}

// heartbeatLoop renews the leases of every running task in one statement
// and stops the runs whose task another actor has taken over.
func (e *Engine) heartbeatLoop(ctx context.Context) {
	ticker := time.NewTicker(e.cfg.Heartbeat)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		e.heartbeat(ctx)
	}
}

func (e *Engine) heartbeat(ctx context.Context) {
	e.mu.Lock()
	refs := make([]store.RunRef, 0, len(e.running))
	for _, r := range e.running {
		if r.phase.Load() != phaseWriting {
			refs = append(refs, store.RunRef{TaskID: r.rec.Task.ID, Attempt: r.rec.Task.Attempt})
		}
	}
	e.mu.Unlock()
	if len(refs) == 0 {
		return
	}
	start := time.Now()
	lost, err := e.store.ExtendLeases(ctx, refs, e.cfg.Lease)
	e.storeWaited(start)
	if err != nil {
		if ctx.Err() == nil {
			e.storeFailed()
			e.log.Error("renewing leases", "error", err)
		}
		return
	}
	for _, l := range lost {
		e.mu.Lock()
		r, ok := e.running[l.TaskID]
		e.mu.Unlock()
		if ok && r.rec.Task.Attempt == l.Attempt && r.phase.Load() == phaseRunning {
			e.log.Warn("run lost its task; stopping it", "task_id", l.TaskID, "attempt", l.Attempt)
			r.cancel(errLost)
		}
	}
}

// maintenanceLoop rescues expired leases and fails tasks past their start
// deadline. The statements are idempotent and skip rows another node is
// handling, so every node runs them; the jitter spreads them out.
func (e *Engine) maintenanceLoop(ctx context.Context) {
	for {
		d := e.cfg.MaintenanceInterval
		d = d*3/4 + rand.N(d/2+1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
		e.rescueExpired(ctx)
		start := time.Now()
		n, err := e.store.FailStartTimeouts(ctx, 0)
		e.storeWaited(start)
		if err != nil && ctx.Err() == nil {
			e.storeFailed()
			e.log.Error("failing overdue tasks", "error", err)
		} else if n > 0 {
			e.log.Info("failed tasks that never started in time", "count", n)
		}
	}
}

// storeFailed records that a store call failed now.
func (e *Engine) storeFailed() { e.lastFailure.Store(time.Now().UnixNano()) }

// storeWaited records a store call that started at start and kept this
// engine waiting a quarter of a lease or more as a failure: a database
// that made this engine wait (SQLite's lock held through an outage) made
// the other workers wait to renew their leases too, so the rescue holds
// off for a lease after it (rescueExpired).
func (e *Engine) storeWaited(start time.Time) {
	if time.Since(start) >= e.cfg.Lease/4 {
		e.storeFailed()
	}
}

// sinceStoreFailure is the time since a store call last failed (a long
// time when none has).
func (e *Engine) sinceStoreFailure() time.Duration {
	last := e.lastFailure.Load()
	if last == 0 {
		return time.Duration(math.MaxInt64)
	}
	return time.Since(time.Unix(0, last))
}
