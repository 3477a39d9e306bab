package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// finish drives a pending task to the terminal status st.
func (e *env) finish(tk *task.Task, st task.Status) {
	e.t.Helper()
	switch st {
	case task.StatusCompleted:
		c := e.claim(tk.ID, tk.QueueName)
		e.setStatus(store.StatusChange{TaskID: tk.ID, Change: task.Change{To: st, Attempt: c.Task.Attempt, Result: resultJSON}})
	case task.StatusFailed:
		c := e.claim(tk.ID, tk.QueueName)
		e.setStatus(store.StatusChange{TaskID: tk.ID, Change: task.Change{To: st, Attempt: c.Task.Attempt, Err: &task.Error{Message: "boom"}}})
	default:
		e.setStatus(store.StatusChange{TaskID: tk.ID, Change: task.Change{To: st}})
	}
}

func testDeleteTask(t *testing.T, newEnv func(t *testing.T) *env) {
	t.Run("a finished task goes with its events and deliveries", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		for _, st := range []task.Status{task.StatusCompleted, task.StatusFailed, task.StatusCancelled} {
			t.Run(string(st), func(t *testing.T) {
				e := e.in(t)
				keep := e.createHooked("acme", nil)
				tk := e.createHooked("acme", nil)
				e.finish(tk, st)
				// An attempt of one of its deliveries, and one left pending.
				for _, d := range e.claimDeliveries(100) {
					if d.TaskID == tk.ID {
						e.record(d, 500, store.DeliveryOutcome{Status: store.DeliveryPending, NextAttemptAt: task.Now().Add(time.Hour)})
						break
					}
				}
				ds := e.deliveries(tk.ID)
				if len(ds) == 0 || len(e.events(tk.ID)) == 0 {
					t.Fatalf("the task has %d deliveries and %d events before the delete", len(ds), len(e.events(tk.ID)))
				}
				keptEvents, keptDeliveries := len(e.events(keep.ID)), len(e.deliveries(keep.ID))

				got, err := e.s.DeleteTask(e.ctx, tk.ID, store.Scope{TenantID: "acme"})
				if err != nil {
					t.Fatalf("DeleteTask: %v", err)
				}
				if got.ID != tk.ID || got.Status != st {
					t.Errorf("DeleteTask returned %s %s", got.ID, got.Status)
				}
				if _, err := e.s.GetTask(e.ctx, tk.ID, store.AdminScope); !errors.Is(err, task.ErrNotFound) {
					t.Errorf("GetTask after the delete: %v", err)
				}
				if evs := e.events(tk.ID); len(evs) != 0 {
					t.Errorf("events left: %s", eventTypes(evs))
				}
				if _, err := e.s.ListDeliveries(e.ctx, tk.ID, store.AdminScope); !errors.Is(err, task.ErrNotFound) {
					t.Errorf("ListDeliveries after the delete: %v", err)
				}
				if _, err := e.s.Redeliver(e.ctx, ds[0].ID, store.AdminScope); !errors.Is(err, store.ErrDeliveryNotFound) {
					t.Errorf("Redeliver of a deleted delivery: %v", err)
				}
				page, err := e.s.ListTasks(e.ctx, store.ListFilter{Scope: store.AdminScope, Limit: 100})
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range page.Records {
					if r.Task.ID == tk.ID {
						t.Error("ListTasks still lists the deleted task")
					}
				}
				if len(e.events(keep.ID)) != keptEvents || len(e.deliveries(keep.ID)) != keptDeliveries {
					t.Error("the delete touched another task's events or deliveries")
				}
				if _, err := e.s.DeleteTask(e.ctx, tk.ID, store.AdminScope); !errors.Is(err, task.ErrNotFound) {
					t.Errorf("deleting it again: %v", err)
				}
			})
		}
	})

	t.Run("pending and executing tasks are refused", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		for _, st := range []task.Status{task.StatusPending, task.StatusExecuting} {
			rec := e.reach(st)
			evs := e.events(rec.Task.ID)
			_, err := e.s.DeleteTask(e.ctx, rec.Task.ID, store.AdminScope)
			if !errors.Is(err, store.ErrNotFinished) {
				t.Errorf("DeleteTask(%s task): %v, want ErrNotFinished", st, err)
			}
			e.assertUnchanged(rec, evs)
		}
	})

	t.Run("a tenant deletes only its own", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		tk := e.createHooked("acme", nil)
		e.finish(tk, task.StatusCancelled)
		before := e.get(tk.ID)
		evs := e.events(tk.ID)
		for name, id := range map[string]uuid.UUID{"another tenant's": tk.ID, "unknown": uuid.New()} {
			if _, err := e.s.DeleteTask(e.ctx, id, store.Scope{TenantID: "globex"}); !errors.Is(err, task.ErrNotFound) {
				t.Errorf("DeleteTask(%s task): %v, want task.ErrNotFound", name, err)
			}
		}
		e.assertUnchanged(before, evs)
		if _, err := e.s.DeleteTask(e.ctx, tk.ID, store.AdminScope); err != nil {
			t.Errorf("an admin deletes it: %v", err)
		}
	})
}

func testArtifactExpiry(t *testing.T, newEnv func(t *testing.T) *env) {
	e := newEnv(t)
	var finished []uuid.UUID
	for _, st := range []task.Status{task.StatusCompleted, task.StatusFailed, task.StatusCancelled} {
		finished = append(finished, e.reach(st).Task.ID)
		time.Sleep(2 * time.Millisecond) // distinct completion times
	}
	e.reach(task.StatusPending)
	e.reach(task.StatusExecuting)
	later := task.Now().Add(time.Hour)

	expiring := func(before time.Time, limit int) []uuid.UUID {
		t.Helper()
		ids, err := e.s.ArtifactsToExpire(e.ctx, before, limit)
		if err != nil {
			t.Fatalf("ArtifactsToExpire: %v", err)
		}
		return ids
	}
	if got := expiring(later, 10); !slices.Equal(got, finished) {
		t.Fatalf("ArtifactsToExpire = %v, want the finished tasks by completion %v", got, finished)
	}
	if got := expiring(later, 2); !slices.Equal(got, finished[:2]) {
		t.Errorf("ArtifactsToExpire with limit 2 = %v", got)
	}
	if got := expiring(task.Now().Add(-time.Hour), 10); len(got) != 0 {
		t.Errorf("tasks finished after before: %v", got)
	}

	// A mark whose before is earlier than a completion leaves that task.
	if err := e.s.MarkArtifactsExpired(e.ctx, finished, task.Now().Add(-time.Hour), task.Now()); err != nil {
		t.Fatal(err)
	}
	if got := expiring(later, 10); !slices.Equal(got, finished) {
		t.Errorf("after a mark that applies to none: %v", got)
	}
	if err := e.s.MarkArtifactsExpired(e.ctx, finished[:2], later, task.Now()); err != nil {
		t.Fatal(err)
	}
	if got := expiring(later, 10); !slices.Equal(got, finished[2:]) {
		t.Errorf("after marking two: %v, want %v", got, finished[2:])
	}

	// A retried task that finishes again has new artifacts to expire.
	failed := finished[1]
	time.Sleep(2 * time.Millisecond)
	e.setStatus(store.StatusChange{TaskID: failed, Change: task.Change{To: task.StatusPending, ResetForRetry: true}})
	if got := expiring(later, 10); slices.Contains(got, failed) {
		t.Errorf("a pending task is listed: %v", got)
	}
	tk := e.get(failed).Task
	c := e.claim(failed, tk.QueueName)
	e.setStatus(store.StatusChange{TaskID: failed, Change: task.Change{To: task.StatusCompleted, Attempt: c.Task.Attempt, Result: resultJSON}})
	if got := expiring(later, 10); !slices.Equal(got, []uuid.UUID{finished[2], failed}) {
		t.Errorf("after the retried task finished again: %v, want %v", got, []uuid.UUID{finished[2], failed})
	}
}
