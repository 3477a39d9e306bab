package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// applyWith returns a Patch.Apply that applies upd through the type's
// ApplyUpdate and counts its calls.
func applyWith(def *registry.Definition, upd *sinkUpdate, calls *int) func(any) ([]registry.Column, error) {
	return func(fields any) ([]registry.Column, error) {
		*calls++
		return def.ApplyUpdate(fields, upd), nil
	}
}

func testUpdateTask(t *testing.T, newEnv func(t *testing.T) *env) {
	e := newEnv(t)

	t.Run("applies base and type fields", func(t *testing.T) {
		t.Parallel()
		e := e.in(t)
		in := e.newTask(e.sink)
		in.OriginTenantID = "tenant-u"
		orig := fullFields()
		e.create(in, orig)

		runAt := time.Date(2030, 1, 2, 3, 4, 5, 6000, zone)
		deadline := time.Date(2031, 1, 1, 0, 0, 0, 0, zone)
		upd := &sinkUpdate{
			Name:     ptr("renamed"),
			Note:     ptr("new note"),
			Deadline: &deadline,
			Tags:     &[]string{"x"},
			Meta:     &map[string]any{"k": []any{1.0, "two"}},
			Nested:   &sinkNested{Label: "patched", Scores: []float64{9}},
			Position: ptr(0),
		}
		calls := 0
		before := time.Now().Add(-time.Millisecond)
		rec, err := e.s.UpdateTask(e.ctx, in.ID, store.Scope{TenantID: "tenant-u"}, store.Patch{
			Priority:      ptr(9),
			QueueName:     ptr("q-patched"),
			RunAt:         &runAt,
			MaxAttempts:   ptr(11),
			WebhookURL:    ptr("https://example.com/new"),
			WebhookEvents: &[]string{"completed"},
			Apply:         applyWith(e.sink, upd, &calls),
		})
		if err != nil {
			t.Fatalf("UpdateTask: %v", err)
		}
		if calls != 1 {
			t.Errorf("Apply called %d times, want 1", calls)
		}
		got := e.get(in.ID)
		equal(t, "returned task", rec.Task, got.Task)
		equal(t, "returned fields", rec.Fields, got.Fields)

		wantTask := utcTask(in)
		wantTask.Priority, wantTask.QueueName, wantTask.RunAt = 9, "q-patched", runAt.UTC()
		wantTask.MaxAttempts, wantTask.WebhookURL, wantTask.WebhookEvents = 11, "https://example.com/new", []string{"completed"}
		if got.Task.UpdatedAt.Before(before) {
			t.Errorf("updated_at = %s, want it moved to now", got.Task.UpdatedAt)
		}
		wantTask.UpdatedAt = got.Task.UpdatedAt
		equal(t, "updated task", got.Task, wantTask)

		wantFields := utcFields(orig)
		wantFields.Name, wantFields.Note, wantFields.Deadline = "renamed", ptr("new note"), ptr(deadline.UTC())
		wantFields.Tags, wantFields.Meta = []string{"x"}, map[string]any{"k": []any{1.0, "two"}}
		wantFields.Nested, wantFields.Position = sinkNested{Label: "patched", Scores: []float64{9}}, 0
		equal(t, "updated fields", got.Fields, wantFields)
	})

	t.Run("scoped by tenant", func(t *testing.T) {
		t.Parallel()
		e := e.in(t)
		rec := e.createSink(func(t *task.Task) { t.OriginTenantID = "tenant-a" })
		before := e.get(rec.Task.ID)
		calls := 0
		_, err := e.s.UpdateTask(e.ctx, rec.Task.ID, store.Scope{TenantID: "tenant-b"}, store.Patch{
			Priority: ptr(5), Apply: applyWith(e.sink, &sinkUpdate{Name: ptr("hijacked")}, &calls),
		})
		if !errors.Is(err, task.ErrNotFound) {
			t.Errorf("UpdateTask by another tenant: err = %v, want task.ErrNotFound", err)
		}
		e.assertUnchanged(before, e.events(rec.Task.ID))
		if _, err := e.s.UpdateTask(e.ctx, rec.Task.ID, store.AdminScope, store.Patch{Priority: ptr(5)}); err != nil {
			t.Errorf("UpdateTask by an admin: %v", err)
		}
		if got := e.get(rec.Task.ID); got.Task.Priority != 5 {
			t.Errorf("priority = %d after an admin update, want 5", got.Task.Priority)
		}
	})

	for _, st := range []task.Status{task.StatusExecuting, task.StatusCompleted, task.StatusFailed, task.StatusCancelled} {
		t.Run("refused when "+string(st), func(t *testing.T) {
			t.Parallel()
			e := e.in(t)
			before := e.reach(st)
			evs := e.events(before.Task.ID)
			calls := 0
			_, err := e.s.UpdateTask(e.ctx, before.Task.ID, store.AdminScope, store.Patch{
				Priority: ptr(99), Apply: applyWith(e.sink, &sinkUpdate{Name: ptr("late")}, &calls),
			})
			if !errors.Is(err, store.ErrNotEditable) {
				t.Errorf("UpdateTask of a %s task: err = %v, want store.ErrNotEditable", st, err)
			}
			if calls != 0 {
				t.Errorf("Apply was called for a %s task", st)
			}
			e.assertUnchanged(before, evs)
		})
	}

	t.Run("an Apply error writes nothing", func(t *testing.T) {
		t.Parallel()
		e := e.in(t)
		rec := e.createSink(nil)
		before := e.get(rec.Task.ID)
		boom := errors.New("boom")
		_, err := e.s.UpdateTask(e.ctx, rec.Task.ID, store.AdminScope, store.Patch{
			Priority: ptr(4),
			Apply: func(fields any) ([]registry.Column, error) {
				e.sink.ApplyUpdate(fields, &sinkUpdate{Name: ptr("half")})
				return nil, boom
			},
		})
		if !errors.Is(err, boom) {
			t.Errorf("UpdateTask: err = %v, want the Apply error", err)
		}
		e.assertUnchanged(before, e.events(rec.Task.ID))
	})

	t.Run("unknown task", func(t *testing.T) {
		t.Parallel()
		e := e.in(t)
		if _, err := e.s.UpdateTask(e.ctx, uuid.New(), store.AdminScope, store.Patch{Priority: ptr(1)}); !errors.Is(err, task.ErrNotFound) {
			t.Errorf("UpdateTask(unknown id): err = %v, want task.ErrNotFound", err)
		}
	})
}
