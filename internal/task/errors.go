package task

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors shared by the store, the engine and the API.
var (
	// ErrNotFound means no task with that id is visible to the caller.
	ErrNotFound = errors.New("task not found")
	// ErrIllegalTransition means the task's current status does not allow
	// the requested change; nothing was written.
	ErrIllegalTransition = errors.New("illegal status transition")
	// ErrStaleRun means the write came from a run that no longer owns the
	// task (its claim was superseded); nothing was written.
	ErrStaleRun = errors.New("run no longer owns the task")
	// ErrRunLost is the cause of a run's context ending because the run
	// lost its claim: the task was rescued (another run may have
	// re-attached to its external job) or changed by another actor. The
	// run must stop without touching the external job.
	ErrRunLost = errors.New("the run lost its claim on the task")
	// ErrIdempotencyMismatch means an Idempotency-Key was reused with a
	// different request body.
	ErrIdempotencyMismatch = errors.New("idempotency key reused with a different request")
)

// TransitionError reports a refused status change with the status the task
// actually had.
type TransitionError struct {
	From, To Status
}

// Error implements error.
func (e *TransitionError) Error() string {
	return fmt.Sprintf("cannot move a %s task to %s", e.From, e.To)
}

// Unwrap lets errors.Is match ErrIllegalTransition.
func (e *TransitionError) Unwrap() error { return ErrIllegalTransition }

// PermanentError marks a processor failure that must not be retried.
type PermanentError struct{ Err error }

// Error implements error.
func (e *PermanentError) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so the engine fails the task without retrying it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err (or an error it wraps) is permanent:
// a PermanentError, or a Classified error that is not retryable.
func IsPermanent(err error) bool {
	var p *PermanentError
	if errors.As(err, &p) {
		return true
	}
	_, retryable, ok := ClassifiedAs(err)
	return ok && !retryable
}

// RetryAfterError asks the engine to retry no sooner than After.
type RetryAfterError struct {
	Err   error
	After time.Duration
}

// Error implements error.
func (e *RetryAfterError) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter wraps err so the next attempt waits at least d.
func RetryAfter(err error, d time.Duration) error {
	return &RetryAfterError{Err: err, After: d}
}

// Classified is implemented by errors that carry their own category and
// retry decision (package executor's errors do). The engine records the
// category of the outermost one in the chain.
type Classified interface {
	error
	// ErrorCategory is the task error category, e.g. "provider_error".
	ErrorCategory() string
	// Retryable reports whether another attempt may succeed.
	Retryable() bool
}

// ClassifiedAs returns the category and retry decision of the first
// Classified error in err's chain; ok is false when there is none.
func ClassifiedAs(err error) (category string, retryable, ok bool) {
	var c Classified
	if !errors.As(err, &c) {
		return "", false, false
	}
	return c.ErrorCategory(), c.Retryable(), true
}

// DeferError gives a run's task back to the queue until Until without
// counting a failed attempt: the work could not start because its
// executor is paused (the service answered 429, or the executor's start
// rate is used up). The task's start deadline keeps counting.
type DeferError struct {
	Err   error
	Until time.Time
}

// Error implements error.
func (e *DeferError) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *DeferError) Unwrap() error { return e.Err }

// Defer wraps err so the engine gives the task back until until.
func Defer(err error, until time.Time) error {
	return &DeferError{Err: err, Until: until}
}
