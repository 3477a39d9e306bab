package sqlstore_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// TestChangesWriteWhatTheRulesSay checks that what the store writes for a
// change, as a delta in SQL without reading the row, is the task that
// task.Change.Apply makes of the row in memory at the same time: for a
// run's outcomes (FinishRuns) and for changes decided under a row lock
// (SetStatus), on both databases.
func TestChangesWriteWhatTheRulesSay(t *testing.T) {
	t.Parallel()
	runAt := time.Date(2030, 1, 2, 3, 4, 5, 123456000, time.UTC)
	errAt := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	outcomes := []struct {
		name   string
		change task.Change
	}{
		{"completed", task.Change{To: task.StatusCompleted, Result: json.RawMessage(`{"artifacts":[],"n":1}`)}},
		{"completed without result", task.Change{To: task.StatusCompleted}},
		{"retry scheduled", task.Change{To: task.StatusPending, RunAt: &runAt, CountRetry: true,
			Err: &task.Error{Message: "boom", Category: task.CategoryProcessor, At: errAt}}},
		{"failed", task.Change{To: task.StatusFailed, CountRetry: true,
			Err: &task.Error{Message: "bad input", Category: task.CategoryPermanent}}},
		{"released", task.Change{To: task.StatusPending}},
		{"resumed", task.Change{To: task.StatusPending, Resume: true, CountResume: true}},
		{"cancelled", task.Change{To: task.StatusCancelled}},
	}
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			for _, o := range outcomes {
				t.Run(o.name, func(t *testing.T) {
					s, id := newEchoStore(t, dialect)
					// A first attempt, failed and retried at once, and a
					// resume, so that the counts and errors have something
					// to add to.
					past := task.Now().Add(-time.Second)
					for attempt, c := range []task.Change{
						{To: task.StatusPending, RunAt: &past, CountRetry: true, Err: &task.Error{Message: "first", Category: task.CategoryProcessor}},
						{To: task.StatusPending, Resume: true, CountResume: true},
					} {
						claimOne(t, s)
						c.Attempt = attempt + 1
						if errs, err := s.FinishRuns(ctx, []store.StatusChange{{TaskID: id, Scope: store.AdminScope, Change: c}}); err != nil || errs[0] != nil {
							t.Fatalf("FinishRuns: %v, %v", err, errs)
						}
					}
					claimOne(t, s)
					// The run's job handle, which a re-queue without resume
					// clears and a resume keeps.
					if err := s.SetExecutorHandle(ctx, id, 3, json.RawMessage(`{"executor":"mock","external_id":"job-3","version":1}`), "job-3"); err != nil {
						t.Fatal(err)
					}
					// Something the outcome does not touch, written meanwhile.
					if _, err := s.SetProgress(ctx, store.ProgressUpdate{TaskID: id, Attempt: 3, Progress: 40,
						Stage: "meanwhile", Lease: time.Minute}); err != nil {
						t.Fatal(err)
					}
					before, err := s.GetTask(ctx, id, store.AdminScope)
					if err != nil {
						t.Fatal(err)
					}
					c := o.change
					c.Attempt = 3
					errs, err := s.FinishRuns(ctx, []store.StatusChange{{TaskID: id, Scope: store.AdminScope, Change: c}})
					if err != nil || errs[0] != nil {
						t.Fatalf("FinishRuns: %v, %v", err, errs)
					}
					checkWritten(t, s, before.Task, c)
				})
			}
			t.Run("user retry of a failed task", func(t *testing.T) {
				s, id := newEchoStore(t, dialect)
				if _, err := s.ClaimTasks(ctx, store.ClaimParams{Worker: "w", Limit: 1, Lease: time.Minute}); err != nil {
					t.Fatal(err)
				}
				if errs, err := s.FinishRuns(ctx, []store.StatusChange{{TaskID: id, Scope: store.AdminScope, Change: task.Change{
					To: task.StatusFailed, Attempt: 1, CountRetry: true, Err: &task.Error{Message: "x", Category: task.CategoryProcessor}}}}); err != nil || errs[0] != nil {
					t.Fatalf("FinishRuns: %v, %v", err, errs)
				}
				before, err := s.GetTask(ctx, id, store.AdminScope)
				if err != nil {
					t.Fatal(err)
				}
				c := task.Change{To: task.StatusPending, From: []task.Status{task.StatusFailed, task.StatusCancelled}, ResetForRetry: true}
				if _, _, err := s.SetStatus(ctx, store.StatusChange{TaskID: id, Scope: store.AdminScope, Change: c}); err != nil {
					t.Fatalf("SetStatus: %v", err)
				}
				checkWritten(t, s, before.Task, c)
			})
		})
	}
}

// claimOne claims the store's one due task.
func claimOne(t *testing.T, s store.Store) {
	t.Helper()
	recs, err := s.ClaimTasks(t.Context(), store.ClaimParams{Worker: "w", Limit: 1, Lease: time.Minute})
	if err != nil || len(recs) != 1 {
		t.Fatalf("ClaimTasks: %v, %d records", err, len(recs))
	}
}

// checkWritten fails unless the stored task is before with c applied at
// the time the store wrote it (its updated_at).
func checkWritten(t *testing.T, s store.Store, before *task.Task, c task.Change) {
	t.Helper()
	after, err := s.GetTask(t.Context(), before.ID, store.AdminScope)
	if err != nil {
		t.Fatal(err)
	}
	want := *before
	if err := c.Apply(&want, after.Task.UpdatedAt); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	got := *after.Task
	if !reflect.DeepEqual(normalised(&got), normalised(&want)) {
		t.Errorf("the store wrote\n %+v\nthe rules make\n %+v", normalised(&got), normalised(&want))
	}
	// The change's event, made from the columns the write returned, is
	// the event of the whole task as written.
	evs, err := s.ListEvents(t.Context(), store.EventFilter{TaskID: before.ID, Scope: store.AdminScope})
	if err != nil || len(evs) == 0 {
		t.Fatalf("ListEvents: %v, %d events", err, len(evs))
	}
	var gotBody, wantBody map[string]any
	if err := json.Unmarshal(evs[len(evs)-1].Body, &gotBody); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(event.New(after.Task, event.KindStatus, after.Task.UpdatedAt).Body, &wantBody); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotBody, wantBody) {
		t.Errorf("the change's event is\n %v\nthe written task's event is\n %v", gotBody, wantBody)
	}
}

// normalised is t with its JSON documents compacted and its times in
// UTC, so that equal tasks compare equal however the database returned
// them.
func normalised(t *task.Task) task.Task {
	n := *t
	for _, doc := range []*json.RawMessage{&n.Result, &n.ExecutorHandle} {
		var v any
		if *doc != nil && json.Unmarshal(*doc, &v) == nil {
			*doc, _ = json.Marshal(v)
		}
	}
	for i := range n.Errors {
		n.Errors[i].At = n.Errors[i].At.UTC()
	}
	return n
}
