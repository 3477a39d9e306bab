package registry

import (
	"context"
	"errors"

	"github.com/computeserver/compute/internal/task"
)

// ResumerOf is implemented by processors that can re-attach to a job they
// started in an external service (its id is job.Task.ServiceTaskID) after
// the worker running it was lost. Without it, a lost task is re-queued and
// started afresh.
type ResumerOf[M any] interface {
	Resume(ctx context.Context, job *Job[M]) (*task.Result, error)
}

// CancellerOf is implemented by processors that can stop a job in the
// executor (a ComfyUI interrupt, a provider's cancel, a process kill) when
// the task is cancelled. The engine also cancels the processor's context.
type CancellerOf[M any] interface {
	Cancel(ctx context.Context, job *Job[M]) error
}

// Resumer is the erased form of ResumerOf.
type Resumer interface {
	Resume(ctx context.Context, run *Run) (*task.Result, error)
}

// Canceller is the erased form of CancellerOf.
type Canceller interface {
	Cancel(ctx context.Context, run *Run) error
}

// ErrNotSupported is returned by an erased optional method the type's
// processor does not implement.
var ErrNotSupported = errors.New("not supported by this task type's processor")

// Resumable reports whether the type's processor can resume lost jobs.
func (d *Definition) Resumable() bool {
	r, ok := d.Processor.(interface{ resumable() bool })
	return ok && r.resumable()
}

// Cancellable reports whether the type's processor can push a cancellation
// into its executor.
func (d *Definition) Cancellable() bool {
	c, ok := d.Processor.(interface{ cancellable() bool })
	return ok && c.cancellable()
}

func (e erasedProcessor[M]) resumable() bool {
	_, ok := e.p.(ResumerOf[M])
	return ok
}

func (e erasedProcessor[M]) cancellable() bool {
	_, ok := e.p.(CancellerOf[M])
	return ok
}

// Resume implements Resumer.
func (e erasedProcessor[M]) Resume(ctx context.Context, run *Run) (*task.Result, error) {
	r, ok := e.p.(ResumerOf[M])
	if !ok {
		return nil, ErrNotSupported
	}
	job, err := e.job(run)
	if err != nil {
		return nil, err
	}
	return r.Resume(ctx, job)
}

// Cancel implements Canceller.
func (e erasedProcessor[M]) Cancel(ctx context.Context, run *Run) error {
	c, ok := e.p.(CancellerOf[M])
	if !ok {
		return ErrNotSupported
	}
	job, err := e.job(run)
	if err != nil {
		return err
	}
	return c.Cancel(ctx, job)
}
