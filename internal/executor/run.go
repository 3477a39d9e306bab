package executor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/telemetry"
)

// cancelTimeout bounds the cancel Execute pushes into the service after
// the run's context ended.
const cancelTimeout = 15 * time.Second

// Execute runs job on ex to its end. A job handed a saved handle of ex
// (job.Saved, on a recovered run) is re-attached to with Recover; one the
// service lost is started afresh. A started job's handle is saved through
// job.SaveHandle before Execute waits. When ctx ends while the job runs (a
// cancel, a timeout, a shutdown), the cancel is pushed into the service;
// not when the run lost its claim (the cause is task.ErrRunLost).
// Every error Execute returns names ex; the service's failures are
// classified (*Error).
func Execute(ctx context.Context, ex Executor, job *Job, r Reporter) (*Output, error) {
	ctx, span := telemetry.Start(ctx, "executor.execute", attribute.String("executor", ex.Name()))
	defer span.End()
	out, err := execute(ctx, ex, job, r)
	if err != nil {
		err = named(ex.Name(), err)
		endSpan(span, err)
	}
	if out != nil {
		task.ReportUsage(ctx, out.Usage)
	}
	return out, err
}

// endSpan records err on span (a no-op span while tracing is off).
func endSpan(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
}

func execute(ctx context.Context, ex Executor, job *Job, r Reporter) (*Output, error) {
	if h := job.Saved; h != nil && h.Executor == ex.Name() {
		rctx, span := telemetry.Start(ctx, "executor.recover")
		got, err := ex.Recover(rctx, job, *h)
		endSpan(span, err)
		span.End()
		switch {
		case err == nil:
			if err := job.SaveHandle(ctx, got); err != nil {
				return nil, fmt.Errorf("saving recovered handle: %w", err)
			}
			return wait(ctx, ex, job, got, r)
		case !Is(err, Lost):
			return nil, fmt.Errorf("recovering job %s: %w", h.ExternalID, err)
		}
		// The service lost the job: start it afresh below.
	}
	var h Handle
	var err error
	if job.batch != nil && job.Batchable && job.Saved == nil {
		// A recovered job (Saved) never batches: it starts alone.
		sctx, span := telemetry.Start(ctx, "executor.start", attribute.Bool("batch", true))
		h, err = job.batch(sctx)
		endSpan(span, err)
		span.End()
	} else {
		if job.admit != nil {
			if err := job.admit(ctx); err != nil {
				return nil, err
			}
		}
		sctx, span := telemetry.Start(ctx, "executor.start")
		h, err = ex.Start(sctx, job)
		endSpan(span, err)
		span.End()
	}
	if err != nil {
		return nil, err
	}
	if h.Executor == "" {
		h.Executor = ex.Name()
	}
	if h.Version == 0 {
		h.Version = HandleVersion
	}
	if err := job.SaveHandle(ctx, h); err != nil {
		cancelDetached(ctx, ex, h)
		return nil, fmt.Errorf("saving handle of job %s: %w", h.ExternalID, err)
	}
	return wait(ctx, ex, job, h, r)
}

// wait waits for the job of h, pushing a cancel into the service when ctx
// ends first, unless the run lost its claim (task.ErrRunLost): the task's
// new run may have re-attached to the job.
func wait(ctx context.Context, ex Executor, job *Job, h Handle, r Reporter) (*Output, error) {
	wctx, span := telemetry.Start(ctx, "executor.wait")
	out, err := ex.Wait(wctx, job, h, r)
	endSpan(span, err)
	span.End()
	if err != nil && ctx.Err() != nil && !errors.Is(context.Cause(ctx), task.ErrRunLost) {
		cancelDetached(ctx, ex, h)
	}
	return out, err
}

// cancelDetached cancels the job of h with a context that outlives ctx.
func cancelDetached(ctx context.Context, ex Executor, h Handle) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cancelTimeout)
	defer cancel()
	_ = ex.Cancel(cctx, h) // best effort: the run is over either way
}

// named fills the executor's name into err's *Error, or prefixes it to an
// unclassified err. Unclassified errors stay so: the end of the run's
// context (the engine knows why: a cancel, a timeout, a shutdown, a lost
// lease) and our own failures (storing an artifact, a lost claim) are not
// the provider's.
func named(name string, err error) error {
	var e *Error
	if errors.As(err, &e) {
		if e.Executor == "" {
			e.Executor = name
		}
		return err
	}
	return fmt.Errorf("executor %s: %w", name, err)
}
