package task_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/task"
)

// changeNow is the time every change in these tests is applied at.
var changeNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// taskIn returns a task in status s at attempt 3 with every field a change
// may touch set to something other than its zero value.
func taskIn(s task.Status) *task.Task {
	started := changeNow.Add(-time.Hour)
	lease := changeNow.Add(time.Minute)
	completed := changeNow.Add(-time.Minute)
	resumed := changeNow.Add(-30 * time.Minute)
	return &task.Task{
		ID: uuid.MustParse("0190c6a8-0000-7000-8000-000000000001"), Status: s, Attempt: 3,
		CreatedAt: changeNow.Add(-2 * time.Hour), UpdatedAt: changeNow.Add(-time.Second), RunAt: changeNow.Add(-time.Hour),
		StartedAt: &started, CompletedAt: &completed, LeaseExpiresAt: &lease, ExecutorInstance: "worker-1",
		Errors:       []task.Error{{Attempt: 1, Message: "first", Category: task.CategoryProcessor, At: started}},
		ErrorMessage: "first", ErrorCategory: task.CategoryProcessor, RetryCount: 2, MaxAttempts: 5,
		Result: json.RawMessage(`{"old":true}`), Progress: 40, Stage: "halfway",
		IsResumed: true, ResumeAttemptCount: 1, LastResumeAttempt: &resumed, ServiceTaskID: "svc-1",
	}
}

// clone deep-copies t's slices so a later change to t cannot show in it.
func clone(t *task.Task) *task.Task {
	c := *t
	c.Errors = slices.Clone(t.Errors)
	return &c
}

func TestChangeAppliesOnlyAllowedTransitions(t *testing.T) {
	t.Parallel()
	for _, from := range task.Statuses {
		for _, to := range task.Statuses {
			t.Run(string(from)+" to "+string(to), func(t *testing.T) {
				t.Parallel()
				tk := taskIn(from)
				before := clone(tk)
				c := task.Change{To: to}
				err := c.Apply(tk, changeNow)
				if task.CanTransition(from, to) {
					if err != nil {
						t.Fatalf("Apply: %v, want the change applied", err)
					}
					if tk.Status != to || !tk.UpdatedAt.Equal(changeNow) {
						t.Errorf("task is %s updated at %s, want %s updated at %s", tk.Status, tk.UpdatedAt, to, changeNow)
					}
					return
				}
				var te *task.TransitionError
				if !errors.As(err, &te) || te.From != from || te.To != to {
					t.Fatalf("Apply: %v, want a TransitionError from %s to %s", err, from, to)
				}
				if !reflect.DeepEqual(tk, before) {
					t.Errorf("a refused change modified the task:\n got %+v\nwant %+v", tk, before)
				}
			})
		}
	}
}

func TestChangeRefusesAStaleRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		status  task.Status
		attempt int
		stale   bool
	}{
		{name: "its own attempt, executing", status: task.StatusExecuting, attempt: 3},
		{name: "an earlier attempt", status: task.StatusExecuting, attempt: 2, stale: true},
		{name: "a later attempt", status: task.StatusExecuting, attempt: 4, stale: true},
		{name: "its attempt, but re-queued", status: task.StatusPending, attempt: 3, stale: true},
		{name: "its attempt, but cancelled", status: task.StatusCancelled, attempt: 3, stale: true},
		{name: "its attempt, but completed", status: task.StatusCompleted, attempt: 3, stale: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tk := taskIn(tt.status)
			before := clone(tk)
			c := task.Change{To: task.StatusFailed, Attempt: tt.attempt, Err: &task.Error{Message: "boom"}}
			err := c.Apply(tk, changeNow)
			if !tt.stale {
				if err != nil {
					t.Fatalf("Apply: %v, want the change applied", err)
				}
				return
			}
			if !errors.Is(err, task.ErrStaleRun) {
				t.Fatalf("Apply: %v, want ErrStaleRun", err)
			}
			if errors.Is(err, task.ErrIllegalTransition) {
				t.Errorf("Apply: %v is also an illegal transition; a stale run is reported as stale only", err)
			}
			if !reflect.DeepEqual(tk, before) {
				t.Errorf("a stale run's change modified the task:\n got %+v\nwant %+v", tk, before)
			}
		})
	}
}

func TestChangeFromNarrowsTheStatuses(t *testing.T) {
	t.Parallel()
	retry := []task.Status{task.StatusFailed, task.StatusCancelled}
	tests := []struct {
		name    string
		status  task.Status
		allowed bool
	}{
		{name: "failed", status: task.StatusFailed, allowed: true},
		{name: "cancelled", status: task.StatusCancelled, allowed: true},
		// executing → pending is a transition, but not a user's retry.
		{name: "executing", status: task.StatusExecuting},
		{name: "completed", status: task.StatusCompleted},
		{name: "pending", status: task.StatusPending},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tk := taskIn(tt.status)
			c := task.Change{To: task.StatusPending, From: retry, ResetForRetry: true}
			err := c.Apply(tk, changeNow)
			var te *task.TransitionError
			switch {
			case tt.allowed && err != nil:
				t.Errorf("Apply: %v, want the retry applied", err)
			case !tt.allowed && (!errors.As(err, &te) || te.From != tt.status || te.To != task.StatusPending):
				t.Errorf("Apply: %v, want a TransitionError from %s", err, tt.status)
			}
		})
	}
}

func TestChangeFields(t *testing.T) {
	t.Parallel()
	runAt := time.Date(2026, 3, 1, 13, 0, 0, 123456789, time.FixedZone("CET", 3600))
	result := json.RawMessage(`{"artifacts":[]}`)
	first := taskIn(task.StatusExecuting).Errors[0]
	tests := []struct {
		name   string
		status task.Status
		change task.Change
		// want edits a copy of the task as it was into what it must become.
		want func(w *task.Task)
	}{
		{
			name: "completion", status: task.StatusExecuting,
			change: task.Change{To: task.StatusCompleted, Attempt: 3, Result: result},
			want: func(w *task.Task) {
				w.Progress, w.Result, w.ErrorMessage, w.ErrorCategory = 100, result, "", ""
				w.CompletedAt, w.LeaseExpiresAt = &changeNow, nil
			},
		},
		{
			name: "failure appends the error with the task's attempt and the change's time", status: task.StatusExecuting,
			change: task.Change{To: task.StatusFailed, Attempt: 3, CountRetry: true,
				Err: &task.Error{Message: "boom", Category: task.CategoryPermanent}},
			want: func(w *task.Task) {
				w.Errors = []task.Error{first, {Attempt: 3, Message: "boom", Category: task.CategoryPermanent, At: changeNow}}
				w.ErrorMessage, w.ErrorCategory, w.RetryCount = "boom", task.CategoryPermanent, 3
				w.CompletedAt, w.LeaseExpiresAt = &changeNow, nil
			},
		},
		{
			name: "an error's own attempt and time are kept", status: task.StatusExecuting,
			change: task.Change{To: task.StatusFailed, Err: &task.Error{Attempt: 9, Message: "m", Category: "c", At: runAt}},
			want: func(w *task.Task) {
				w.Errors = []task.Error{first, {Attempt: 9, Message: "m", Category: "c", At: runAt}}
				w.ErrorMessage, w.ErrorCategory = "m", "c"
				w.CompletedAt, w.LeaseExpiresAt = &changeNow, nil
			},
		},
		{
			name: "cancel keeps the result and progress", status: task.StatusPending,
			change: task.Change{To: task.StatusCancelled},
			want: func(w *task.Task) {
				w.CompletedAt, w.LeaseExpiresAt = &changeNow, nil
			},
		},
		{
			name: "re-queue after a failed attempt", status: task.StatusExecuting,
			change: task.Change{To: task.StatusPending, Attempt: 3, CountRetry: true, RunAt: &runAt,
				Err: &task.Error{Message: "retry me", Category: task.CategoryProcessor}},
			want: func(w *task.Task) {
				w.Errors = []task.Error{first, {Attempt: 3, Message: "retry me", Category: task.CategoryProcessor, At: changeNow}}
				w.ErrorMessage, w.ErrorCategory, w.RetryCount = "retry me", task.CategoryProcessor, 3
				w.ExecutorInstance, w.LeaseExpiresAt = "", nil
				w.IsResumed, w.ServiceTaskID = false, ""
				// RunAt is kept at the precision the databases store, in UTC.
				w.RunAt = time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)
			},
		},
		{
			name: "re-queue without RunAt runs now", status: task.StatusExecuting,
			change: task.Change{To: task.StatusPending},
			want: func(w *task.Task) {
				w.ExecutorInstance, w.LeaseExpiresAt, w.RunAt = "", nil, changeNow
				w.IsResumed, w.ServiceTaskID = false, ""
			},
		},
		{
			name: "a recovery re-queue counts a resume and drops the external job", status: task.StatusExecuting,
			change: task.Change{To: task.StatusPending, Attempt: 3, CountResume: true},
			want: func(w *task.Task) {
				w.ResumeAttemptCount, w.LastResumeAttempt = 2, &changeNow
				w.ExecutorInstance, w.LeaseExpiresAt, w.RunAt = "", nil, changeNow
				w.IsResumed, w.ServiceTaskID = false, ""
			},
		},
		{
			name: "a resume keeps the external job", status: task.StatusExecuting,
			change: task.Change{To: task.StatusPending, Attempt: 3, CountResume: true, Resume: true},
			want: func(w *task.Task) {
				w.ResumeAttemptCount, w.LastResumeAttempt = 2, &changeNow
				w.ExecutorInstance, w.LeaseExpiresAt, w.RunAt = "", nil, changeNow
				w.IsResumed, w.ServiceTaskID = true, "svc-1"
			},
		},
		{
			name: "a user's retry resets the run's outcome and keeps the history", status: task.StatusFailed,
			change: task.Change{To: task.StatusPending, From: []task.Status{task.StatusFailed}, ResetForRetry: true},
			want: func(w *task.Task) {
				w.Result, w.ErrorMessage, w.ErrorCategory = nil, "", ""
				w.Progress, w.Stage, w.CompletedAt, w.RetryCount = 0, "", nil, 0
				w.ExecutorInstance, w.LeaseExpiresAt, w.RunAt = "", nil, changeNow
				w.IsResumed, w.ServiceTaskID = false, ""
			},
		},
		{
			name: "a claim changes only the status", status: task.StatusPending,
			change: task.Change{To: task.StatusExecuting},
			want:   func(*task.Task) {},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tk := taskIn(tt.status)
			want := clone(tk)
			want.Status, want.UpdatedAt = tt.change.To, changeNow
			tt.want(want)
			if err := tt.change.Apply(tk, changeNow); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if !reflect.DeepEqual(tk, want) {
				t.Errorf("after the change\n got %+v\nwant %+v", tk, want)
			}
		})
	}
}

func TestChangeDoesNotAliasItsError(t *testing.T) {
	t.Parallel()
	tk := taskIn(task.StatusExecuting)
	e := &task.Error{Message: "boom"}
	c := task.Change{To: task.StatusFailed, Err: e}
	if err := c.Apply(tk, changeNow); err != nil {
		t.Fatal(err)
	}
	if e.Attempt != 0 || !e.At.IsZero() {
		t.Errorf("Apply filled in the caller's error: %+v", e)
	}
}
