package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/telemetry"
)

// outcome is a run's result on its way to the completer.
type outcome struct {
	change store.StatusChange
	result chan error
	run    *activeRun
}

// run executes one attempt and records its outcome.
func (e *Engine) run(parent context.Context, rec *store.Record) {
	t := rec.Task
	// The run's span (claim to recorded outcome) is a child of the create
	// request's span, whose context the task row keeps.
	var span trace.Span
	parent, span = startRunSpan(parent, t)
	defer span.End()
	traceID := telemetry.TraceID(parent)
	defer func() {
		<-e.slots
		e.runs.Done()
		e.Notify() // a slot is free
	}()
	// logRun writes one line about this attempt; the attributes are only
	// built when the level is enabled.
	logRun := func(level slog.Level, msg string, attrs ...slog.Attr) {
		if !e.log.Enabled(parent, level) {
			return
		}
		head := []slog.Attr{slog.Any("task_id", t.ID), slog.String("task_type", t.Type), slog.Int("attempt", t.Attempt)}
		if traceID != "" {
			head = append(head, slog.String("trace_id", traceID))
		}
		attrs = append(head, attrs...)
		e.log.LogAttrs(parent, level, msg, attrs...)
	}

	ctx, cancel := context.WithCancelCause(parent)
	env := &runtime{e: e, rec: rec}
	self := &activeRun{rec: rec, cancel: cancel, env: env}
	e.mu.Lock()
	e.running[t.ID] = self
	_, early := e.early[t.ID]
	delete(e.early, t.ID)
	e.mu.Unlock()
	defer func() {
		e.forget(self)
		cancel(nil)
	}()
	if early && e.cancelledEarly(ctx, t) {
		cancel(errCancelled)
	}
	runCtx, cancelTimeout := context.WithTimeout(ctx, runTimeout(rec))
	defer cancelTimeout()

	began := time.Now()
	if obs := e.cfg.Observer; obs != nil {
		due := t.RunAt
		if t.CreatedAt.After(due) {
			due = t.CreatedAt
		}
		obs.RunStarted(t, max(began.Sub(due), 0))
	}
	resume := t.IsResumed && resumable(rec.Def, t)
	// The executors report what their services spent into the meter;
	// it is written with the run's outcome, whatever the outcome.
	var usage task.UsageMeter
	result, err := safeProcess(task.WithUsageMeter(runCtx, &usage), rec, env, resume)
	env.endProgress()
	change, what := e.outcomeOf(rec, result, err, runCtx, ctx)
	if change != nil {
		change.Usage = usage.Total()
	}
	endRunSpan(span, what, err)
	if change == nil {
		logRun(slog.LevelInfo, "run stopped", slog.String("reason", what))
		e.observeEnd(t, what, began, task.Usage{})
		return
	}
	// The run keeps its slot and its place in the running set until the
	// outcome is written: at most Concurrency outcomes wait in memory,
	// and the heartbeat renews the lease of one whose write is retried.
	self.phase.Store(phaseWriting)
	o := outcome{change: *change, result: make(chan error, 1), run: self}
	e.done <- o
	werr := <-o.result
	attrs := []slog.Attr{slog.String("outcome", what)}
	if err != nil {
		attrs = append(attrs, slog.Any("error", err))
	}
	if werr == nil {
		e.observeEnd(t, what, began, change.Usage)
	} else {
		e.observeEnd(t, "lease lost", began, task.Usage{})
	}
	switch {
	case werr == nil:
		logRun(slog.LevelInfo, "task attempt recorded", attrs...)
	case errors.Is(werr, errAbandoned):
		logRun(slog.LevelError, "outcome abandoned at shutdown: the task will be rescued and run again", append(attrs, slog.Any("write_error", werr))...)
	case errors.Is(werr, task.ErrStaleRun), errors.Is(werr, task.ErrIllegalTransition):
		// Another actor (a cancel, a rescue) changed the task first; the
		// conditional write refused ours, which is the point.
		logRun(slog.LevelInfo, "outcome not recorded: the task changed meanwhile", append(attrs, slog.Any("reason", werr))...)
	default:
		logRun(slog.LevelError, "recording outcome", append(attrs, slog.Any("write_error", werr))...)
	}
}

// outcomeLabels name the outcomes outcomeOf describes, for the Observer.
var outcomeLabels = map[string]string{
	"completed": "completed", "failed": "failed", "retry scheduled": "retried", "deferred": "deferred",
	"released at shutdown": "released", "cancelled": "cancelled", "lease lost": "lost",
}

// observeEnd tells the Observer, if any, that a run of t begun at began
// ended with the outcome outcomeOf described as what, having written
// usage.
func (e *Engine) observeEnd(t *task.Task, what string, began time.Time, usage task.Usage) {
	if e.cfg.Observer == nil {
		return
	}
	label, ok := outcomeLabels[what]
	if !ok {
		label = "other"
	}
	e.cfg.Observer.RunEnded(t, label, time.Since(began), usage)
}

// runTimeout is the execution timeout of one attempt: the task's
// timeout_seconds, else its type's default.
func runTimeout(rec *store.Record) time.Duration {
	if rec.Task.TimeoutSeconds > 0 {
		return time.Duration(rec.Task.TimeoutSeconds) * time.Second
	}
	return rec.Def.Timeout
}

// forget removes a run from the running set. A newer attempt of the same
// task (a retry claimed while this run ignored its cancellation) may have
// replaced the entry; that one is not this run's to remove.
func (e *Engine) forget(r *activeRun) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.running[r.rec.Task.ID] == r {
		delete(e.running, r.rec.Task.ID)
	}
}

// safeProcess runs (or resumes) the processor, turning a panic into a
// permanent error so one bad task cannot take the worker down.
func safeProcess(ctx context.Context, rec *store.Record, env registry.Runtime, resume bool) (res *task.Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = task.Permanent(fmt.Errorf("processor panicked: %v", p))
		}
	}()
	run := &registry.Run{Task: rec.Task, Fields: rec.Fields, Env: env}
	if resume {
		return rec.Def.Processor.(registry.Resumer).Resume(ctx, run)
	}
	return rec.Def.Processor.Process(ctx, run)
}

// cancelledEarly reports whether the run of t, for which a cancel was
// heard before it registered, no longer owns its task: the cancel may
// have been for an earlier run of the task (a user retry since), so the
// store decides, through the heartbeat's conditional lease renewal.
func (e *Engine) cancelledEarly(ctx context.Context, t *task.Task) bool {
	lost, err := e.store.ExtendLeases(ctx, []store.RunRef{{TaskID: t.ID, Attempt: t.Attempt}}, e.cfg.Lease)
	return err == nil && len(lost) == 1
}

// outcomeOf decides what a finished run writes; nil when it must write
// nothing (its task was cancelled or taken over).
func (e *Engine) outcomeOf(rec *store.Record, result *task.Result, err error, runCtx, taskCtx context.Context) (*store.StatusChange, string) {
	t := rec.Task
	base := store.StatusChange{TaskID: t.ID, Scope: store.AdminScope, Change: task.Change{Attempt: t.Attempt}}
	cause := context.Cause(taskCtx)
	switch {
	case errors.Is(cause, errCancelled):
		return nil, "cancelled"
	case errors.Is(cause, errLost):
		return nil, "lease lost"
	case err == nil:
		if result == nil {
			result = &task.Result{}
		}
		if result.Artifacts == nil {
			result.Artifacts = []task.Artifact{}
		}
		result.FillOutput()
		raw, merr := json.Marshal(result)
		if merr == nil {
			base.To, base.Result = task.StatusCompleted, raw
			return &base, "completed"
		}
		err = task.Permanent(fmt.Errorf("encoding result: %w", merr))
	case errors.Is(cause, errShutdown):
		// Give the task back at once, without counting a failure.
		base.To = task.StatusPending
		return &base, "released at shutdown"
	}
	var deferred *task.DeferError
	if errors.As(err, &deferred) && runCtx.Err() == nil {
		// The executor is paused: the task waits for it without counting
		// a failed attempt; a task that had not started before keeps its
		// start deadline.
		category := task.CategoryRateLimited
		if c, _, ok := task.ClassifiedAs(err); ok {
			category = c
		}
		at := deferred.Until
		base.To, base.RunAt, base.Unstart = task.StatusPending, &at, t.RetryCount == 0 && !t.IsResumed
		base.Err = &task.Error{Attempt: t.Attempt, Message: err.Error(), Category: category, At: task.Now()}
		return &base, "deferred"
	}
	category, retryable := task.CategoryProcessor, !task.IsPermanent(err)
	// An error that carries its category (an executor's) keeps it.
	c, _, classified := task.ClassifiedAs(err)
	if classified {
		category = c
	}
	switch {
	case errors.Is(runCtx.Err(), context.DeadlineExceeded) && taskCtx.Err() == nil:
		category, retryable = task.CategoryTimeout, false
		err = fmt.Errorf("execution timed out after %s: %w", runTimeout(rec), err)
	case !retryable && !classified:
		category = task.CategoryPermanent
	}
	now := task.Now()
	base.Err = &task.Error{Attempt: t.Attempt, Message: err.Error(), Category: category, At: now}
	base.CountRetry = true
	if retryable && t.RetryCount+1 < t.MaxAttempts {
		at := now.Add(backoff(t.RetryCount+1, err)) // measured from the error's time
		base.To, base.RunAt = task.StatusPending, &at
		return &base, "retry scheduled"
	}
	base.To = task.StatusFailed
	return &base, "failed"
}

// backoff is the delay before retry number n (1 for the first retry):
// exponential from 1s, capped at 10 minutes, with jitter over the upper
// half; a processor's RetryAfter is a floor.
func backoff(n int, err error) time.Duration {
	d := time.Second << min(max(n-1, 0), 10)
	d = min(d, 10*time.Minute)
	d = d/2 + rand.N(d/2+1)
	var ra *task.RetryAfterError
	if errors.As(err, &ra) && ra.After > d {
		d = ra.After
	}
	return d
}

// completerStart starts the goroutines that write outcomes in batches.
func (e *Engine) completerStart() {
	n := max(e.cfg.Completers, 1)
	e.compDone = make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(n)
	for range n {
		go func() { defer wg.Done(); e.completer() }()
	}
	go func() { wg.Wait(); close(e.compDone) }()
}

// completerStop waits for the completers after every run has ended.
func (e *Engine) completerStop() {
	if e.compDone == nil {
		return
	}
	close(e.done)
	<-e.compDone
}

// completer writes the outcomes that are waiting, as one batch, whenever
// there are any: under load batches grow by themselves, idle it writes one
// at a time without delay.
func (e *Engine) completer() {
	for first := range e.done {
		batch := []outcome{first}
	drain:
		for len(batch) < 500 {
			select {
			case o, ok := <-e.done:
				if !ok {
					break drain
				}
				batch = append(batch, o)
			default:
				break drain
			}
		}
		errs := e.finishRuns(batch)
		for i, o := range batch {
			o.result <- errs[i]
		}
	}
}

// errAbandoned marks an outcome given up at the end of the shutdown grace.
var errAbandoned = errors.New("outcome abandoned: the shutdown grace period is over")

// maxRejected is how often a write of outcomes may fail while the database
// answers before a batch is split into single writes, and a single write
// is given up (then the task's lease expires and the rescue takes over).
const maxRejected = 5

// finishRuns writes a batch of outcomes and returns, for each, nil when it
// was written or why not: a refusal (the task changed meanwhile) or the
// write's error. A batch whose write keeps failing while the database
// answers is written one outcome at a time, so one outcome the database
// rejects cannot hold the others.
func (e *Engine) finishRuns(batch []outcome) []error {
	changes := make([]store.StatusChange, len(batch))
	for i, o := range batch {
		changes[i] = o.change
	}
	errs, err := e.writeOutcomes(batch, changes)
	if err == nil {
		return errs
	}
	out := make([]error, len(batch))
	if len(batch) == 1 || errors.Is(err, errAbandoned) {
		for i := range out {
			out[i] = err
		}
		return out
	}
	for i := range batch {
		errs, err := e.writeOutcomes(batch[i:i+1], changes[i:i+1])
		if err != nil {
			out[i] = err
		} else {
			out[i] = errs[0]
		}
	}
	return out
}

// writeOutcomes writes changes (a refusal of one is not an error: it
// comes back in the slice), retrying an error with growing delays for as
// long as the database is unreachable, and maxRejected times while it
// answers. While the write is retried, the heartbeat keeps the runs'
// leases alive. When the shutdown grace is over, each write gets one more
// try.
func (e *Engine) writeOutcomes(batch []outcome, changes []store.StatusChange) ([]error, error) {
	delay := 50 * time.Millisecond
	rejected := 0
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := time.Now()
		errs, err := e.store.FinishRuns(ctx, changes)
		e.storeWaited(start)
		cancel()
		if err == nil {
			return errs, nil
		}
		e.storeFailed()
		select {
		case <-e.abandon:
			return nil, fmt.Errorf("%w: %w", errAbandoned, err)
		default:
		}
		if e.reachable() {
			if rejected++; rejected >= maxRejected {
				return nil, err
			}
		}
		if attempt == 1 {
			for _, o := range batch {
				o.run.phase.Store(phaseRetrying)
			}
		}
		e.log.Warn("writing outcomes failed; retrying", "error", err, "tasks", len(changes), "attempt", attempt)
		select {
		case <-time.After(delay):
		case <-e.abandon:
		}
		delay = min(delay*2, 2*time.Second)
	}
}

// reachable reports whether the database answers a ping.
func (e *Engine) reachable() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return e.store.Ping(ctx) == nil
}
