package task_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/task"
)

func TestPermanentNil(t *testing.T) {
	t.Parallel()
	if err := task.Permanent(nil); err != nil {
		t.Errorf("Permanent(nil) = %v, want nil", err)
	}
}

func TestIsPermanent(t *testing.T) {
	t.Parallel()
	base := errors.New("bad input")
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "nil", err: nil, want: false},
		{name: "plain", err: base, want: false},
		{name: "permanent", err: task.Permanent(base), want: true},
		{name: "wrapped once", err: fmt.Errorf("decoding: %w", task.Permanent(base)), want: true},
		{name: "wrapped twice", err: fmt.Errorf("run: %w", fmt.Errorf("decoding: %w", task.Permanent(base))), want: true},
		{name: "joined", err: errors.Join(errors.New("other"), task.Permanent(base)), want: true},
		{name: "formatted with %v", err: fmt.Errorf("decoding: %v", task.Permanent(base)), want: false},
		{name: "retry after", err: task.RetryAfter(base, time.Second), want: false},
		{name: "permanent inside retry after", err: task.RetryAfter(task.Permanent(base), time.Second), want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := task.IsPermanent(tt.err); got != tt.want {
				t.Errorf("IsPermanent(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestPermanentKeepsMessageAndCause(t *testing.T) {
	t.Parallel()
	base := errors.New("bad input")
	err := task.Permanent(base)
	if err.Error() != "bad input" {
		t.Errorf("Permanent(err).Error() = %q, want %q", err.Error(), "bad input")
	}
	if !errors.Is(err, base) {
		t.Errorf("errors.Is(Permanent(err), err) = false, want true")
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	base := errors.New("rate limited")
	tests := []struct {
		name  string
		err   error
		after time.Duration
	}{
		{name: "direct", err: task.RetryAfter(base, 3*time.Second), after: 3 * time.Second},
		{name: "wrapped", err: fmt.Errorf("calling service: %w", task.RetryAfter(base, time.Minute)), after: time.Minute},
		{name: "zero", err: task.RetryAfter(base, 0), after: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if !errors.Is(tt.err, base) {
				t.Errorf("errors.Is(%v, base) = false: RetryAfter does not unwrap", tt.err)
			}
			var ra *task.RetryAfterError
			if !errors.As(tt.err, &ra) {
				t.Fatalf("errors.As(%v, *RetryAfterError) = false", tt.err)
			}
			if ra.After != tt.after {
				t.Errorf("After = %s, want %s", ra.After, tt.after)
			}
			if ra.Error() != base.Error() {
				t.Errorf("Error() = %q, want the wrapped message %q", ra.Error(), base.Error())
			}
			if task.IsPermanent(tt.err) {
				t.Errorf("IsPermanent(%v) = true for a retry-after error", tt.err)
			}
		})
	}
}

func TestTransitionError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
	}{
		{name: "direct", err: &task.TransitionError{From: task.StatusCompleted, To: task.StatusCancelled}},
		{name: "wrapped", err: fmt.Errorf("cancelling task: %w", &task.TransitionError{From: task.StatusCompleted, To: task.StatusCancelled})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if !errors.Is(tt.err, task.ErrIllegalTransition) {
				t.Errorf("errors.Is(%v, ErrIllegalTransition) = false", tt.err)
			}
			for _, other := range []error{task.ErrNotFound, task.ErrStaleRun, task.ErrIdempotencyMismatch} {
				if errors.Is(tt.err, other) {
					t.Errorf("errors.Is(%v, %v) = true", tt.err, other)
				}
			}
			var te *task.TransitionError
			if !errors.As(tt.err, &te) {
				t.Fatalf("errors.As(%v, *TransitionError) = false", tt.err)
			}
			if te.From != task.StatusCompleted || te.To != task.StatusCancelled {
				t.Errorf("TransitionError = %+v, want completed → cancelled", te)
			}
			if msg := te.Error(); msg != "cannot move a completed task to cancelled" {
				t.Errorf("Error() = %q", msg)
			}
		})
	}
}
