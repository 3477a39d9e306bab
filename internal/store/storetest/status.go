package storetest

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

func testSetStatus(t *testing.T, newEnv func(t *testing.T) *env) {
	e := newEnv(t)

	// Every (from, to) pair: allowed ones write the row and exactly one
	// event, the others write nothing.
	for _, from := range task.Statuses {
		for _, to := range task.Statuses {
			allowed := slices.Contains(task.AllowedFrom(to), from)
			name := string(from) + "→" + string(to)
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				e := e.in(t)
				before := e.reach(from)
				id := before.Task.ID
				evs := e.events(id)
				got, ev, err := e.s.SetStatus(e.ctx, store.StatusChange{TaskID: id, Scope: store.AdminScope, Change: task.Change{To: to}})
				if !allowed {
					if !errors.Is(err, task.ErrIllegalTransition) {
						t.Fatalf("SetStatus(%s): err = %v, want task.ErrIllegalTransition", name, err)
					}
					var te *task.TransitionError
					if !errors.As(err, &te) || te.From != from || te.To != to {
						t.Errorf("SetStatus(%s): err = %#v, want a *task.TransitionError{%s, %s}", name, err, from, to)
					}
					e.assertUnchanged(before, evs)
					return
				}
				if err != nil {
					t.Fatalf("SetStatus(%s): %v", name, err)
				}
				stored := e.get(id)
				equalTask(t, "returned task", got, stored.Task)
				if got.Status != to {
					t.Errorf("status = %s, want %s", got.Status, to)
				}
				after := e.events(id)
				if len(after) != len(evs)+1 {
					t.Fatalf("events = %s, want one more than %s", eventTypes(after), eventTypes(evs))
				}
				last := after[len(after)-1]
				if ev == nil || last.ID != ev.ID || last.ID <= evs[len(evs)-1].ID {
					t.Errorf("returned event %+v, stored %+v: want the stored one, with a larger id than %d", ev, last, evs[len(evs)-1].ID)
				}
				if last.Status != to || last.EventType != sinkName+"_status_update" || last.TaskID != id {
					t.Errorf("event = %+v, want a %s status update", last, to)
				}
				var body event.Body
				if err := json.Unmarshal(last.Body, &body); err != nil || body.Status != to || body.TaskID != id {
					t.Errorf("event body %s (%v), want status %s", last.Body, err, to)
				}
			})
		}
	}

	t.Run("not found and scope", func(t *testing.T) {
		t.Parallel()
		e := e.in(t)
		if _, _, err := e.s.SetStatus(e.ctx, store.StatusChange{TaskID: uuid.New(), Scope: store.AdminScope, Change: task.Change{To: task.StatusCancelled}}); !errors.Is(err, task.ErrNotFound) {
			t.Errorf("SetStatus(unknown id): err = %v, want task.ErrNotFound", err)
		}
		rec := e.createSink(func(t *task.Task) { t.OriginTenantID = "tenant-a" })
		before := e.get(rec.Task.ID)
		evs := e.events(rec.Task.ID)
		_, _, err := e.s.SetStatus(e.ctx, store.StatusChange{TaskID: rec.Task.ID, Scope: store.Scope{TenantID: "tenant-b"}, Change: task.Change{To: task.StatusCancelled}})
		if !errors.Is(err, task.ErrNotFound) {
			t.Errorf("SetStatus by another tenant: err = %v, want task.ErrNotFound", err)
		}
		e.assertUnchanged(before, evs)
		if got, _ := e.setStatus(store.StatusChange{TaskID: rec.Task.ID, Scope: store.Scope{TenantID: "tenant-a"}, Change: task.Change{To: task.StatusCancelled}}); got.Status != task.StatusCancelled {
			t.Errorf("SetStatus by its tenant: status %s", got.Status)
		}
	})

	t.Run("stale run writes nothing", func(t *testing.T) {
		t.Parallel()
		e := e.in(t)
		rec := e.createSink(nil)
		id, q := rec.Task.ID, rec.Task.QueueName
		first := e.claim(id, q)
		e.setStatus(store.StatusChange{TaskID: id, Change: task.Change{To: task.StatusPending, Attempt: first.Task.Attempt, CountRetry: true}})
		second := e.claim(id, q)
		if second.Task.Attempt != first.Task.Attempt+1 {
			t.Fatalf("second claim has attempt %d, want %d", second.Task.Attempt, first.Task.Attempt+1)
		}
		before := e.get(id)
		evs := e.events(id)
		for _, to := range []task.Status{task.StatusCompleted, task.StatusFailed, task.StatusPending, task.StatusCancelled} {
			_, _, err := e.s.SetStatus(e.ctx, store.StatusChange{TaskID: id, Change: task.Change{To: to, Attempt: first.Task.Attempt, Result: json.RawMessage(`{}`),
				Err: &task.Error{Message: "zombie", Category: task.CategoryProcessor}}})
			if !errors.Is(err, task.ErrStaleRun) {
				t.Errorf("SetStatus(%s) by the first run: err = %v, want task.ErrStaleRun", to, err)
			}
		}
		e.assertUnchanged(before, evs)

		// The current run finishes; afterwards even it is stale.
		e.setStatus(store.StatusChange{TaskID: id, Change: task.Change{To: task.StatusCompleted, Attempt: second.Task.Attempt, Result: resultJSON}})
		before, evs = e.get(id), e.events(id)
		_, _, err := e.s.SetStatus(e.ctx, store.StatusChange{TaskID: id, Change: task.Change{To: task.StatusFailed, Attempt: second.Task.Attempt}})
		if !errors.Is(err, task.ErrStaleRun) {
			t.Errorf("SetStatus after completion by the run: err = %v, want task.ErrStaleRun", err)
		}
		e.assertUnchanged(before, evs)
	})

	t.Run("completion", func(t *testing.T) {
		t.Parallel()
		e := e.in(t)
		rec := e.createSink(nil)
		c := e.claim(rec.Task.ID, rec.Task.QueueName)
		if _, err := e.s.SetProgress(e.ctx, store.ProgressUpdate{TaskID: c.Task.ID, Attempt: c.Task.Attempt, Progress: 40, Lease: time.Minute}); err != nil {
			t.Fatal(err)
		}
		before := task.Now()
		got, ev := e.setStatus(store.StatusChange{TaskID: c.Task.ID, Change: task.Change{To: task.StatusCompleted, Attempt: c.Task.Attempt, Result: resultJSON}})
		stored := e.get(c.Task.ID).Task
		equalTask(t, "returned task", got, stored)
		if stored.Progress != 100 {
			t.Errorf("progress = %v, want 100", stored.Progress)
		}
		if !jsonEqual(stored.Result, resultJSON) {
			t.Errorf("result = %s, want %s", stored.Result, resultJSON)
		}
		within(t, "completed_at", stored.CompletedAt, before, task.Now())
		if stored.LeaseExpiresAt != nil {
			t.Errorf("lease_expires_at = %v after completion, want nil", stored.LeaseExpiresAt)
		}
		var body event.Body
		if err := json.Unmarshal(ev.Body, &body); err != nil || body.Progress != 100 || body.CompletedAt == nil || body.Status != task.StatusCompleted {
			t.Errorf("completion event body = %s (%v)", ev.Body, err)
		}
	})

	t.Run("errors are appended", func(t *testing.T) {
		t.Parallel()
		e := e.in(t)
		rec := e.createSink(nil)
		id, q := rec.Task.ID, rec.Task.QueueName
		c := e.claim(id, q)
		e.setStatus(store.StatusChange{TaskID: id, Change: task.Change{To: task.StatusPending, Attempt: c.Task.Attempt, CountRetry: true,
			Err: &task.Error{Message: "first failure", Category: task.CategoryProcessor}}})
		st := e.get(id).Task
		if len(st.Errors) != 1 || st.Errors[0].Message != "first failure" || st.Errors[0].Category != task.CategoryProcessor ||
			st.Errors[0].Attempt != c.Task.Attempt || st.Errors[0].At.IsZero() {
			t.Errorf("errors = %+v, want one entry for attempt %d", st.Errors, c.Task.Attempt)
		}
		if st.ErrorMessage != "first failure" || st.ErrorCategory != task.CategoryProcessor || st.RetryCount != 1 {
			t.Errorf("error_message %q, error_category %q, retry_count %d", st.ErrorMessage, st.ErrorCategory, st.RetryCount)
		}
		if st.ExecutorInstance != "" || st.LeaseExpiresAt != nil {
			t.Errorf("a re-queued task keeps executor %q and lease %v", st.ExecutorInstance, st.LeaseExpiresAt)
		}

		c = e.claim(id, q)
		at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		_, ev := e.setStatus(store.StatusChange{TaskID: id, Change: task.Change{To: task.StatusFailed, Attempt: c.Task.Attempt,
			Err: &task.Error{Attempt: 9, Message: "second failure", Category: task.CategoryPermanent, At: at}}})
		st = e.get(id).Task
		want := []task.Error{st.Errors[0], {Attempt: 9, Message: "second failure", Category: task.CategoryPermanent, At: at}}
		equal(t, "errors", st.Errors, want)
		if st.ErrorMessage != "second failure" || st.ErrorCategory != task.CategoryPermanent || st.CompletedAt == nil {
			t.Errorf("after failing: error_message %q, error_category %q, completed_at %v", st.ErrorMessage, st.ErrorCategory, st.CompletedAt)
		}
		var body event.Body
		if err := json.Unmarshal(ev.Body, &body); err != nil || body.ErrorMessage != "second failure" || body.ErrorCategory != task.CategoryPermanent {
			t.Errorf("failure event body = %s (%v)", ev.Body, err)
		}

		// A user retry clears the error fields but keeps the history.
		e.setStatus(store.StatusChange{TaskID: id, Change: task.Change{To: task.StatusPending, ResetForRetry: true}})
		st = e.get(id).Task
		if st.ErrorMessage != "" || st.ErrorCategory != "" || st.CompletedAt != nil || st.Progress != 0 || st.Result != nil || len(st.Errors) != 2 {
			t.Errorf("after a retry: %+v", st)
		}
	})

	t.Run("re-queue with run_at", func(t *testing.T) {
		t.Parallel()
		e := e.in(t)
		rec := e.createSink(nil)
		c := e.claim(rec.Task.ID, rec.Task.QueueName)
		later := task.Now().Add(time.Hour).In(zone)
		e.setStatus(store.StatusChange{TaskID: c.Task.ID, Change: task.Change{To: task.StatusPending, Attempt: c.Task.Attempt, RunAt: &later}})
		if got := e.get(c.Task.ID).Task.RunAt; !got.Equal(later) || got.Location() != time.UTC {
			t.Errorf("run_at = %s, want %s in UTC", got, later)
		}
		recs, err := e.s.ClaimTasks(e.ctx, store.ClaimParams{Worker: "w", Limit: 1, Lease: time.Minute, Queues: []string{rec.Task.QueueName}})
		if err != nil || len(recs) != 0 {
			t.Errorf("a task re-queued for later was claimed now: %v, %v", ids(recs), err)
		}
	})
}
