package executor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/computeserver/compute/internal/task"
)

// Category is the class of an executor failure, recorded as the task
// error's category. Each is retryable or not (Retryable).
type Category string

// The categories every executor classifies its failures into.
const (
	// ProviderUnavailable: the service could not be reached or is down
	// (connection refused, 502/503/504); a type's fallback executors take
	// over on it. Retried.
	ProviderUnavailable Category = task.CategoryProviderUnavailable
	// ProviderError: the service failed the job for a reason of its own
	// (a 500, a node error, an unexpected answer). Retried.
	ProviderError Category = task.CategoryProviderError
	// RateLimited: the service refused for now (429); retried no sooner
	// than its Retry-After.
	RateLimited Category = task.CategoryRateLimited
	// InvalidInput: the service refused the job's input (400/422, a
	// missing template field, an input that is not an image). Not retried.
	InvalidInput Category = task.CategoryInvalidInput
	// SafetyBlocked: a content filter refused the prompt or the output.
	// Not retried.
	SafetyBlocked Category = task.CategorySafetyBlocked
	// Timeout: the job ran past its execution timeout. Not retried.
	Timeout Category = task.CategoryTimeout
	// StartTimeout: the job did not start in time (queued too long at the
	// service); fallbacks take over on it. Not retried.
	StartTimeout Category = task.CategoryStartTimeout
	// Cancelled: the job was cancelled. Not retried.
	Cancelled Category = task.CategoryCancelled
	// Lost: the service no longer knows the job (a restarted server
	// forgot its queue). Retried: Execute starts it afresh.
	Lost Category = task.CategoryLost
)

// Retryable reports whether a failure of category c may succeed on another
// attempt.
func (c Category) Retryable() bool {
	switch c {
	case ProviderUnavailable, ProviderError, RateLimited, Lost:
		return true
	}
	return false
}

// Error is a classified executor failure.
type Error struct {
	// Category classifies the failure.
	Category Category
	// Executor is the configured executor's name; Server the server that
	// failed, when the executor has several.
	Executor, Server string
	// Err is the underlying failure.
	Err error
}

// Error implements error: "executor NAME (server S): category: message".
func (e *Error) Error() string {
	where := "executor " + e.Executor
	if e.Executor == "" {
		where = "executor"
	}
	if e.Server != "" {
		where += " (server " + e.Server + ")"
	}
	return fmt.Sprintf("%s: %s: %v", where, e.Category, e.Err)
}

// Unwrap returns the underlying failure.
func (e *Error) Unwrap() error { return e.Err }

// ErrorCategory implements task.Classified.
func (e *Error) ErrorCategory() string { return string(e.Category) }

// Retryable implements task.Classified.
func (e *Error) Retryable() bool { return e.Category.Retryable() }

var _ task.Classified = (*Error)(nil)

// Errorf returns an *Error of category c whose message is formatted like
// fmt.Errorf (so %w wraps).
func Errorf(c Category, format string, args ...any) error {
	return &Error{Category: c, Err: fmt.Errorf(format, args...)}
}

// Classify returns err as an *Error of category c, unless it already is
// classified; nil stays nil.
func Classify(c Category, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return &Error{Category: c, Err: err}
}

// Retry returns a RateLimited error that asks the engine to wait at least
// after before the next attempt.
func Retry(after time.Duration, err error) error {
	return task.RetryAfter(&Error{Category: RateLimited, Err: err}, after)
}

// CategoryOf returns the category of err: its *Error's, Cancelled or
// Timeout for a context's end, else ProviderError.
func CategoryOf(err error) Category {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e.Category
	case errors.Is(err, context.Canceled):
		return Cancelled
	case errors.Is(err, context.DeadlineExceeded):
		return Timeout
	}
	return ProviderError
}

// Is reports whether err is an executor error of category c.
func Is(err error, c Category) bool {
	var e *Error
	return errors.As(err, &e) && e.Category == c
}

// FromStatus classifies a service's HTTP answer: 400, 413 and 422 are
// invalid input, 408, 502, 503 and 504 the service being unavailable, 429
// rate limiting, the rest a provider error. err describes the answer.
func FromStatus(code int, err error) error {
	switch {
	case code == http.StatusBadRequest, code == http.StatusRequestEntityTooLarge, code == http.StatusUnprocessableEntity:
		return &Error{Category: InvalidInput, Err: err}
	case code == http.StatusTooManyRequests:
		return &Error{Category: RateLimited, Err: err}
	case code == http.StatusRequestTimeout, code == http.StatusBadGateway, code == http.StatusServiceUnavailable, code == http.StatusGatewayTimeout:
		return &Error{Category: ProviderUnavailable, Err: err}
	}
	return &Error{Category: ProviderError, Err: err}
}

// FromTransport classifies an error of an HTTP call that got no answer: a
// context's end stays as it is (the caller decides), a network error is
// the service being unavailable.
func FromTransport(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var ne net.Error
	var oe *net.OpError
	if errors.As(err, &ne) || errors.As(err, &oe) {
		return &Error{Category: ProviderUnavailable, Err: err}
	}
	return Classify(ProviderUnavailable, err)
}
