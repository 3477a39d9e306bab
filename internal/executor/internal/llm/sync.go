package llm

import (
	"context"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/inproc"
	"github.com/computeserver/compute/internal/executor/internal/hosted"
)

// Call makes one synchronous call for a job whose fields are f, reporting
// progress through m, and returns its output.
type Call func(ctx context.Context, job *executor.Job, f *Fields, m *hosted.Meter) (*executor.Output, error)

// Sync turns a synchronous call into the executor seam. Start checks the
// job and enters it in an in-process table; Wait makes the call; Cancel
// ends the call's context, which drops its connection (the only cancel
// these APIs have, reference §0); Recover finds the job only in the
// process that started it: a saved handle read by another process is
// lost, and Execute makes the call afresh.
type Sync struct {
	name  string
	check func(job *executor.Job, f *Fields) error
	do    Call
	jobs  *inproc.Jobs
}

// NewSync returns a Sync for the executor called name that makes calls
// with do; check, when not nil, refuses a job before it is entered (a
// model not configured for its type).
func NewSync(name string, check func(*executor.Job, *Fields) error, do Call) *Sync {
	return &Sync{name: name, check: check, do: do, jobs: inproc.New(0)}
}

// Name is the configured executor name.
func (s *Sync) Name() string { return s.name }

// Start checks the job's fields and enters it; nothing is sent yet.
func (s *Sync) Start(_ context.Context, job *executor.Job) (executor.Handle, error) {
	f, err := Decode(job)
	if err != nil {
		return executor.Handle{}, err
	}
	if s.check != nil {
		if err := s.check(job, f); err != nil {
			return executor.Handle{}, err
		}
	}
	id, err := s.jobs.Submit()
	if err != nil {
		return executor.Handle{}, err
	}
	return executor.Handle{Executor: s.name, ExternalID: id, Version: executor.HandleVersion}, nil
}

// Wait makes the call of the job of h and returns its output.
func (s *Sync) Wait(ctx context.Context, job *executor.Job, h executor.Handle, r executor.Reporter) (*executor.Output, error) {
	f, err := Decode(job)
	if err != nil {
		return nil, err
	}
	var out *executor.Output
	err = s.jobs.Run(ctx, h.ExternalID, func(ctx context.Context) error {
		m := &hosted.Meter{R: r}
		var err error
		out, err = s.do(ctx, job, f, m)
		return err
	})
	return out, err
}

// Cancel ends the call of h, dropping its connection; a call that ended
// is not an error.
func (s *Sync) Cancel(_ context.Context, h executor.Handle) error {
	s.jobs.Cancel(h.ExternalID)
	return nil
}

// Recover returns h when this process still has its job, else a lost
// error: a synchronous call cannot be re-attached to.
func (s *Sync) Recover(_ context.Context, _ *executor.Job, h executor.Handle) (executor.Handle, error) {
	return s.jobs.Recover(h)
}

// NeedsModel is a check for NewSync that refuses, as invalid input, a job
// that names no model of its own and whose task type has none in models.
func NeedsModel(models hosted.Models) func(*executor.Job, *Fields) error {
	return func(job *executor.Job, f *Fields) error {
		if f.ModelFor(models, job.Type) == "" {
			return executor.Errorf(executor.InvalidInput, "no model is configured for %s tasks", job.Type)
		}
		return nil
	}
}
