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
// describes at time now; when refused it returns the reason and leaves t
// as it was. The rules:
//
//   - every change sets the status and updated_at;
//   - ResetForRetry clears result, error message and category, progress,
//     stage, completed_at and retry_count; errors and started_at keep the
//     history;
//   - Err is appended to errors and sets error message and category;
//   - CountRetry and CountResume count, the latter stamping
//     last_resume_attempt;
//   - a change to pending clears the executor and lease and sets run_at
//     (RunAt, else now); it keeps service_task_id and sets is_resumed when
//     Resume, else clears both;
//   - a change to a terminal status sets completed_at and clears the
//     lease;
//   - completion sets progress to 100, stores Result and clears the error
//     message and category (earlier attempts' errors stay in errors).
func (c *Change) Apply(t *Task, now time.Time) error {
	if err := c.Check(t); err != nil {
		return err
	}
	t.Status = c.To
	t.UpdatedAt = now
	if c.ResetForRetry {
		t.Result, t.ErrorMessage, t.ErrorCategory = nil, "", ""
		t.Progress, t.Stage, t.CompletedAt = 0, "", nil
		t.RetryCount = 0
	}
	if c.Err != nil {
		e := *c.Err
		if e.At.IsZero() {
			e.At = now
		}
		if e.Attempt == 0 {
			e.Attempt = t.Attempt
		}
		t.Errors = append(t.Errors, e)
		t.ErrorMessage, t.ErrorCategory = e.Message, e.Category
	}
	if c.CountRetry {
		t.RetryCount++
	}
	if c.CountResume {
		t.ResumeAttemptCount++
		t.LastResumeAttempt = &now
	}
	switch {
	case c.To == StatusPending:
		// A fresh run, or one that re-attaches to the external job.
		t.ExecutorInstance, t.LeaseExpiresAt = "", nil
		if c.Resume {
			t.IsResumed = true
		} else {
			t.IsResumed, t.ServiceTaskID = false, ""
		}
		t.RunAt = now
		if c.RunAt != nil {
			t.RunAt = precise(*c.RunAt)
		}
	case c.To.Terminal():
		t.CompletedAt, t.LeaseExpiresAt = &now, nil
	}
	if c.To == StatusCompleted {
		t.Progress = 100
		t.Result = c.Result
		t.ErrorMessage, t.ErrorCategory = "", ""
	}
	return nil
}
