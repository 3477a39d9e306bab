package task

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// Change is a requested status change of a task: the transition rules in
// one place. Apply checks it against the task as it is and, when allowed,
// makes the task what the change describes; the store then writes that,
// conditionally on the status and attempt the task had, and decides
// nothing itself.
type Change struct {
	// To is the status the task moves to.
	To Status
	// Attempt, when > 0, makes the change conditional on the run that
	// holds that attempt still owning the task (it is executing at that
	// attempt); otherwise the change is refused with ErrStaleRun.
	Attempt int
	// From, when not empty, narrows the statuses the task may be in for
	// the change (a user's retry comes from failed or cancelled only).
	From []Status
	// Result is stored on completion.
	Result json.RawMessage
	// Err, when set, is appended to the task's errors (its Attempt and At
	// default to the task's attempt and the change's time) and becomes
	// its error message and category.
	Err *Error
	// RunAt sets when a re-queued task may run again (default: now).
	RunAt *time.Time
	// CountRetry increments retry_count (a failed attempt).
	CountRetry bool
	// CountResume increments resume_attempt_count and sets
	// last_resume_attempt (a run lost with its worker, recovered).
	CountResume bool
	// Resume, on a change to pending, keeps service_task_id and sets
	// is_resumed, so that the next run re-attaches to the external job.
	Resume bool
	// ResetForRetry clears result, error fields, progress and the retry
	// count (a user retry of a failed or cancelled task).
	ResetForRetry bool
	// Unstart, on a change to pending, clears started_at: the run gave
	// the task back before it started anything (its executor was paused),
	// so the task has not started and its start deadline still counts.
	Unstart bool
	// Usage is what the run's services reported spending; it is added to
	// the task's (a run's outcome, whatever it is: a failed run was paid
	// for too).
	Usage Usage
}

// Check reports why c may not be applied to t: an error wrapping
// ErrStaleRun when c.Attempt names a run that no longer owns t, a
// *TransitionError when t's status does not allow the move (or is not
// one of c.From); nil when it may.
func (c *Change) Check(t *Task) error {
	if c.Attempt > 0 && (t.Attempt != c.Attempt || t.Status != StatusExecuting) {
		return fmt.Errorf("%w: task %s is %s at attempt %d, the run held attempt %d",
			ErrStaleRun, t.ID, t.Status, t.Attempt, c.Attempt)
	}
	if !CanTransition(t.Status, c.To) || (len(c.From) > 0 && !slices.Contains(c.From, t.Status)) {
		return &TransitionError{From: t.Status, To: c.To}
	}
	return nil
}

// Apply checks c against t (see Check) and, when allowed, changes t as c
// describes at time now (c.Delta, applied with Delta.ApplyTo); when
// refused it returns the reason and leaves t as it was.
func (c *Change) Apply(t *Task, now time.Time) error {
	if err := c.Check(t); err != nil {
		return err
	}
	c.Delta(t.Attempt, now).ApplyTo(t)
	return nil
}

// Delta is what c writes when applied at time now to a task at attempt
// attempt (which an appended error records when c.Err names none). The
// rules:
//
//   - every change sets the status and updated_at;
//   - ResetForRetry clears result, error message and category, progress,
//     stage, completed_at and retry_count; errors and started_at keep the
//     history;
//   - Err is appended to errors and sets error message and category;
//   - CountRetry and CountResume count, the latter stamping
//     last_resume_attempt;
//   - a change to pending clears the executor and lease (and started_at
//     when Unstart) and sets run_at (RunAt, else now); it keeps service_task_id and the executor's
//     handle and sets is_resumed when Resume, else clears all three;
//   - a change to a terminal status sets completed_at and clears the
//     lease;
//   - completion sets progress to 100, stores Result and clears the error
//     message and category (earlier attempts' errors stay in errors).
func (c *Change) Delta(attempt int, now time.Time) Delta {
	d := Delta{Status: c.To, At: now}
	if c.ResetForRetry {
		d.Result, d.ErrorMessage, d.ErrorCategory = Set[json.RawMessage](nil), Set(""), Set("")
		d.Progress, d.Stage, d.CompletedAt = Set(0.0), Set(""), Set[*time.Time](nil)
		d.RetryCount = Set(0)
	}
	if c.Err != nil {
		e := *c.Err
		if e.At.IsZero() {
			e.At = now
		}
		if e.Attempt == 0 {
			e.Attempt = attempt
		}
		d.AppendError = &e
		d.ErrorMessage, d.ErrorCategory = Set(e.Message), Set(e.Category)
	}
	if c.CountRetry {
		d.AddRetries = 1
	}
	if c.CountResume {
		d.AddResumes = 1
	}
	d.AddUsage = c.Usage
	switch {
	case c.To == StatusPending:
		// A fresh run, or one that re-attaches to the external job.
		d.ExecutorInstance, d.LeaseExpiresAt = Set(""), Set[*time.Time](nil)
		d.IsResumed = Set(c.Resume)
		if !c.Resume {
			d.ServiceTaskID, d.ExecutorHandle = Set(""), Set[json.RawMessage](nil)
		}
		if c.Unstart {
			d.StartedAt = Set[*time.Time](nil)
		}
		d.RunAt = Set(now)
		if c.RunAt != nil {
			d.RunAt = Set(precise(*c.RunAt))
		}
	case c.To.Terminal():
		d.CompletedAt, d.LeaseExpiresAt = Set(&now), Set[*time.Time](nil)
	}
	if c.To == StatusCompleted {
		d.Progress = Set(100.0)
		d.Result = Set(c.Result)
		d.ErrorMessage, d.ErrorCategory = Set(""), Set("")
	}
	return d
}

// Delta is what a status change writes, as differences from the task: a
// field whose Set is true replaces the task's value, the counts add to
// it, an error is appended, and everything else is kept. The store turns
// a Delta into one conditional UPDATE without reading the row first;
// ApplyTo makes the same change to a task in memory.
type Delta struct {
	// Status and At (updated_at) are always written.
	Status Status
	At     time.Time

	Result                      Opt[json.RawMessage]
	ErrorMessage, ErrorCategory Opt[string]
	Progress                    Opt[float64]
	Stage                       Opt[string]
	CompletedAt                 Opt[*time.Time]
	StartedAt                   Opt[*time.Time]
	LeaseExpiresAt              Opt[*time.Time]
	ExecutorInstance            Opt[string]
	RunAt                       Opt[time.Time]
	IsResumed                   Opt[bool]
	ServiceTaskID               Opt[string]
	ExecutorHandle              Opt[json.RawMessage]
	// RetryCount, when set, replaces retry_count before AddRetries adds
	// to it.
	RetryCount Opt[int]
	AddRetries int
	// AddResumes adds to resume_attempt_count and, when > 0, sets
	// last_resume_attempt to At.
	AddResumes int
	// AppendError, when set, is appended to errors.
	AppendError *Error
	// AddUsage adds to the task's usage (provider_seconds, input_tokens,
	// output_tokens); ResetForRetry keeps it, as it keeps errors.
	AddUsage Usage
}

// Opt is a value a Delta may write: V replaces the task's value when Set
// is true.
type Opt[T any] struct {
	V   T
	Set bool
}

// Set returns an Opt that writes v.
func Set[T any](v T) Opt[T] { return Opt[T]{V: v, Set: true} }

// to writes o into *dst when o is set.
func (o Opt[T]) to(dst *T) {
	if o.Set {
		*dst = o.V
	}
}

// ApplyTo makes the change d describes to t.
func (d Delta) ApplyTo(t *Task) {
	t.Status, t.UpdatedAt = d.Status, d.At
	d.Result.to(&t.Result)
	d.ErrorMessage.to(&t.ErrorMessage)
	d.ErrorCategory.to(&t.ErrorCategory)
	d.Progress.to(&t.Progress)
	d.Stage.to(&t.Stage)
	d.CompletedAt.to(&t.CompletedAt)
	d.StartedAt.to(&t.StartedAt)
	d.LeaseExpiresAt.to(&t.LeaseExpiresAt)
	d.ExecutorInstance.to(&t.ExecutorInstance)
	d.RunAt.to(&t.RunAt)
	d.IsResumed.to(&t.IsResumed)
	d.ServiceTaskID.to(&t.ServiceTaskID)
	d.ExecutorHandle.to(&t.ExecutorHandle)
	d.RetryCount.to(&t.RetryCount)
	t.RetryCount += d.AddRetries
	if d.AddResumes > 0 {
		t.ResumeAttemptCount += d.AddResumes
		at := d.At
		t.LastResumeAttempt = &at
	}
	if d.AppendError != nil {
		t.Errors = append(t.Errors, *d.AppendError)
	}
	t.Usage = t.Usage.Plus(d.AddUsage)
}
