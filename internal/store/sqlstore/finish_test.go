package sqlstore_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/testutil/testdb"
	"github.com/google/uuid"
)

// TestFinishRunsWritesOnlyTheChange checks that a run's outcome is
// written as the change it is, conditionally on the run still holding the
// task: what another writer wrote meanwhile without ending the run (a
// progress report) stays, and a run that was ended meanwhile (a cancel)
// writes nothing and is told why.
func TestFinishRunsWritesOnlyTheChange(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()

			t.Run("progress before", func(t *testing.T) {
				s, id := newEchoStore(t, dialect)
				recs, err := s.ClaimTasks(ctx, store.ClaimParams{Worker: "w", Limit: 1, Lease: time.Minute})
				if err != nil || len(recs) != 1 {
					t.Fatalf("ClaimTasks: %v, %d records", err, len(recs))
				}
				if _, err := s.SetProgress(ctx, store.ProgressUpdate{TaskID: id, Attempt: 1, Progress: 50,
					Stage: "written meanwhile", Lease: time.Minute}); err != nil {
					t.Fatalf("SetProgress: %v", err)
				}
				errs, err := s.FinishRuns(ctx, []store.StatusChange{{TaskID: id, Scope: store.AdminScope, Change: task.Change{
					To: task.StatusCompleted, Attempt: 1, Result: json.RawMessage(`{"ok":true}`)}}})
				if err != nil || errs[0] != nil {
					t.Fatalf("FinishRuns: %v, %v", err, errs)
				}
				rec, err := s.GetTask(ctx, id, store.AdminScope)
				if err != nil {
					t.Fatal(err)
				}
				if rec.Task.Status != task.StatusCompleted || rec.Task.Stage != "written meanwhile" || rec.Task.Progress != 100 {
					t.Errorf("task is %s at %v%% with stage %q; want completed at 100%% with the stage written meanwhile",
						rec.Task.Status, rec.Task.Progress, rec.Task.Stage)
				}
				assertStatusEvents(t, s, id, task.StatusPending, task.StatusExecuting, task.StatusCompleted)
			})

			t.Run("cancel before", func(t *testing.T) {
				s, id := newEchoStore(t, dialect)
				if _, err := s.ClaimTasks(ctx, store.ClaimParams{Worker: "w", Limit: 1, Lease: time.Minute}); err != nil {
					t.Fatal(err)
				}
				if _, _, err := s.SetStatus(ctx, store.StatusChange{TaskID: id, Scope: store.AdminScope,
					Change: task.Change{To: task.StatusCancelled}}); err != nil {
					t.Fatalf("SetStatus: %v", err)
				}
				errs, err := s.FinishRuns(ctx, []store.StatusChange{{TaskID: id, Scope: store.AdminScope, Change: task.Change{
					To: task.StatusCompleted, Attempt: 1}}})
				if err != nil {
					t.Fatal(err)
				}
				if !errors.Is(errs[0], task.ErrStaleRun) {
					t.Errorf("FinishRuns refused with %v; want a stale-run error", errs[0])
				}
				rec, err := s.GetTask(ctx, id, store.AdminScope)
				if err != nil {
					t.Fatal(err)
				}
				if rec.Task.Status != task.StatusCancelled {
					t.Errorf("task is %s, want cancelled", rec.Task.Status)
				}
				assertStatusEvents(t, s, id, task.StatusPending, task.StatusExecuting, task.StatusCancelled)
			})
		})
	}
}

// TestSQLiteClaimSkipsTasksChangedMeanwhile checks SQLite's claim, which
// reads the due tasks before its write transaction: a task patched in
// between is not claimed with its stale copy, and the next claim takes it
// with the patch applied. (PostgreSQL claims in one statement.)
func TestSQLiteClaimSkipsTasksChangedMeanwhile(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, id := newEchoStore(t, "sqlite")
	recs, err := s.ClaimReadFirstAround(ctx, store.ClaimParams{Worker: "w", Limit: 1, Lease: time.Minute}, func() {
		time.Sleep(2 * time.Millisecond) // let updated_at move
		prio := 7
		if _, err := s.UpdateTask(ctx, id, store.AdminScope, store.Patch{Priority: &prio}); err != nil {
			t.Errorf("UpdateTask: %v", err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 0 {
		t.Fatalf("claimed %d tasks with the copy read before the patch, want none", len(recs))
	}
	recs, err = s.ClaimTasks(ctx, store.ClaimParams{Worker: "w", Limit: 1, Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Task.Priority != 7 || recs[0].Task.Attempt != 1 || recs[0].Task.Status != task.StatusExecuting {
		t.Fatalf("second claim: %d records (%+v), want the task at priority 7, attempt 1, executing", len(recs), recs)
	}
	stored, err := s.GetTask(ctx, id, store.AdminScope)
	if err != nil {
		t.Fatal(err)
	}
	equalClaimed(t, stored.Task, recs[0].Task)
	assertStatusEvents(t, s, id, task.StatusPending, task.StatusExecuting)
}

// equalClaimed fails unless the claim's copy of a task is what was stored.
func equalClaimed(t *testing.T, stored, claimed *task.Task) {
	t.Helper()
	if stored.Status != claimed.Status || stored.Attempt != claimed.Attempt || !stored.UpdatedAt.Equal(claimed.UpdatedAt) ||
		stored.ExecutorInstance != claimed.ExecutorInstance || !stored.LeaseExpiresAt.Equal(*claimed.LeaseExpiresAt) ||
		!stored.StartedAt.Equal(*claimed.StartedAt) {
		t.Errorf("the claim returned %+v, the row holds %+v", claimed, stored)
	}
}

// assertStatusEvents fails unless the task's status events are want, in
// order.
func assertStatusEvents(t *testing.T, s store.Store, id uuid.UUID, want ...task.Status) {
	t.Helper()
	evs, err := s.ListEvents(t.Context(), store.EventFilter{TaskID: id, Scope: store.AdminScope})
	if err != nil {
		t.Fatal(err)
	}
	var got []task.Status
	for _, e := range evs {
		got = append(got, e.Status)
	}
	if len(got) != len(want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("events %v, want %v", got, want)
		}
	}
}
