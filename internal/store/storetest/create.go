package storetest

import (
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/echo"
)

// fullTask returns a task whose every base column holds a distinct,
// non-zero value (times in a non-UTC zone), so a column mix-up shows.
func (e *env) fullTask() *task.Task {
	t := e.newTask(e.sink)
	base := time.Date(2025, 3, 4, 5, 6, 7, 891234000, zone)
	t.Progress = 12.5
	t.Stage = "staging"
	t.ProviderType = "mock"
	t.Priority = -3
	t.OriginInstance = "api-7"
	t.OriginZone = "eu-west"
	t.OriginTenantID = "tenant-full"
	t.CreatedAt = base
	t.UpdatedAt = base.Add(time.Second)
	t.StartedAt = ptr(base.Add(2 * time.Second))
	t.CompletedAt = ptr(base.Add(3 * time.Second))
	t.RunAt = base.Add(4 * time.Second)
	t.ExecutorType = "comfyui"
	t.ExecutorInstance = "gpu-3"
	t.ServiceTaskID = "prompt-123"
	t.EntityID = "look-full"
	t.Errors = []task.Error{{Attempt: 1, Message: "first", Category: task.CategoryTimeout, At: base.UTC()}}
	t.ErrorMessage = "first"
	t.ErrorCategory = task.CategoryTimeout
	t.RetryCount = 1
	t.MaxAttempts = 5
	t.IsResumed = true
	t.ResumeAttemptCount = 2
	t.LastResumeAttempt = ptr(base.Add(5 * time.Second))
	t.TimeoutSeconds = 321
	t.StartTimeoutSeconds = 45
	t.WebhookURL = "https://example.com/hook"
	t.WebhookEvents = []string{"completed", "failed"}
	t.Attempt = 4
	t.LeaseExpiresAt = ptr(base.Add(6 * time.Second))
	t.IdempotencyKey = "idem-full-" + t.ID.String()
	t.RequestHash = "hash-full"
	t.TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	return t
}

// utcTask returns a copy of t with every time in UTC.
func utcTask(t *task.Task) *task.Task {
	c := *t
	c.CreatedAt, c.UpdatedAt, c.RunAt = c.CreatedAt.UTC(), c.UpdatedAt.UTC(), c.RunAt.UTC()
	for _, p := range []**time.Time{&c.StartedAt, &c.CompletedAt, &c.LastResumeAttempt, &c.LeaseExpiresAt} {
		if *p != nil {
			*p = ptr((**p).UTC())
		}
	}
	return &c
}

func testCreateGet(t *testing.T, newEnv func(t *testing.T) *env) {
	e := newEnv(t)
	cases := []struct {
		name   string
		fields *sinkFields
	}{
		{"every field set", fullFields()},
		{"zero values and nil pointers", &sinkFields{}},
		{"pointers to zero values", zeroPtrFields()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := e.in(t)
			in := e.fullTask()
			want, wantFields := utcTask(in), utcFields(tc.fields)
			e.create(in, tc.fields)
			got := e.get(in.ID)
			if got.Def != e.sink {
				t.Errorf("Def = %v, want the kitchensink definition", got.Def)
			}
			f, ok := got.Fields.(*sinkFields)
			if !ok {
				t.Fatalf("Fields is %T, want *sinkFields", got.Fields)
			}
			equal(t, "task", got.Task, want)
			equal(t, "fields", f, wantFields)
			for _, c := range []struct {
				name string
				at   time.Time
			}{{"happened_at", f.At}, {"created_at", got.Task.CreatedAt}, {"run_at", got.Task.RunAt}} {
				if c.at.Location() != time.UTC {
					t.Errorf("%s = %s, want UTC", c.name, c.at)
				}
			}
			evs := e.events(in.ID)
			if len(evs) != 1 {
				t.Fatalf("events after create = %s, want one", eventTypes(evs))
			}
			ev := evs[0]
			if ev.EventType != sinkName+"_status_update" || ev.Status != task.StatusPending || ev.TaskID != in.ID ||
				ev.TaskType != sinkName || ev.TenantID != in.OriginTenantID {
				t.Errorf("created event = %+v", ev)
			}
		})
	}

	t.Run("echo returns its own type", func(t *testing.T) {
		t.Parallel()
		e := e.in(t)
		rec := e.createEcho(nil)
		got := e.get(rec.Task.ID)
		f, ok := got.Fields.(*echo.Fields)
		if !ok {
			t.Fatalf("Fields is %T, want *echo.Fields", got.Fields)
		}
		equal(t, "echo fields", f, rec.Fields)
		equal(t, "echo task", got.Task, rec.Task)
		if got.Def != e.echo {
			t.Errorf("Def = %v, want echo", got.Def.Name)
		}
	})

	t.Run("times are kept to the microsecond", func(t *testing.T) {
		t.Parallel()
		e := e.in(t)
		in := e.newTask(e.sink)
		nano := time.Date(2025, 5, 6, 7, 8, 9, 123456789, zone)
		in.CreatedAt, in.UpdatedAt, in.RunAt, in.StartedAt = nano, nano, nano, ptr(nano)
		fields := &sinkFields{Name: "nanos", At: nano, Deadline: ptr(nano)}
		e.create(in, fields)
		got := e.get(in.ID)
		micro := nano.UTC().Truncate(time.Microsecond)
		f := got.Fields.(*sinkFields)
		for name, at := range map[string]time.Time{
			"created_at": got.Task.CreatedAt, "updated_at": got.Task.UpdatedAt, "run_at": got.Task.RunAt,
			"started_at": *got.Task.StartedAt, "happened_at": f.At, "deadline": *f.Deadline,
		} {
			if at != micro {
				t.Errorf("%s = %s, want %s (UTC, truncated to microseconds on every database)", name, at, micro)
			}
		}
	})

	t.Run("GetTask scope", func(t *testing.T) {
		t.Parallel()
		e := e.in(t)
		rec := e.createSink(func(t *task.Task) { t.OriginTenantID = "tenant-a" })
		id := rec.Task.ID
		if _, err := e.s.GetTask(e.ctx, id, store.Scope{TenantID: "tenant-b"}); !errors.Is(err, task.ErrNotFound) {
			t.Errorf("GetTask by another tenant: err = %v, want task.ErrNotFound", err)
		}
		if _, err := e.s.GetTask(e.ctx, id, store.Scope{}); !errors.Is(err, task.ErrNotFound) {
			t.Errorf("GetTask with an empty tenant scope: err = %v, want task.ErrNotFound", err)
		}
		got, err := e.s.GetTask(e.ctx, id, store.Scope{TenantID: "tenant-a"})
		if err != nil || got.Task.ID != id {
			t.Errorf("GetTask by its tenant = %v, %v", got, err)
		}
		if _, err := e.s.GetTask(e.ctx, uuid.New(), store.AdminScope); !errors.Is(err, task.ErrNotFound) {
			t.Errorf("GetTask(unknown id): err = %v, want task.ErrNotFound", err)
		}
	})
}

func testIdempotency(t *testing.T, newEnv func(t *testing.T) *env) {
	t.Run("repeated key returns the first task", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		first := e.newTask(e.sink)
		first.IdempotencyKey, first.RequestHash = "key-1", "hash-1"
		firstFields := &sinkFields{Name: "first", At: task.Now()}
		e.create(first, firstFields)

		again := e.newTask(e.sink)
		again.IdempotencyKey, again.RequestHash = "key-1", "hash-1"
		rec, created, err := e.s.CreateTask(e.ctx, &store.Record{Task: again, Fields: &sinkFields{Name: "second"}, Def: e.sink})
		if err != nil {
			t.Fatalf("CreateTask with a used key: %v", err)
		}
		if created {
			t.Errorf("CreateTask with a used key: created = true")
		}
		if rec == nil || rec.Task.ID != first.ID {
			t.Fatalf("CreateTask with a used key returned %v, want task %s", rec, first.ID)
		}
		equal(t, "returned fields", rec.Fields, firstFields)
		equal(t, "returned task", rec.Task, e.get(first.ID).Task)
		if _, err := e.s.GetTask(e.ctx, again.ID, store.AdminScope); !errors.Is(err, task.ErrNotFound) {
			t.Errorf("the second task was stored: GetTask err = %v", err)
		}
		if evs := e.events(uuid.Nil); len(evs) != 1 {
			t.Errorf("events = %s, want only the first task's", eventTypes(evs))
		}

		other := e.newTask(e.sink)
		other.IdempotencyKey, other.RequestHash = "key-1", "hash-2"
		_, created, err = e.s.CreateTask(e.ctx, &store.Record{Task: other, Fields: &sinkFields{}, Def: e.sink})
		if !errors.Is(err, task.ErrIdempotencyMismatch) || created {
			t.Errorf("CreateTask with a used key and another hash: created=%v err=%v, want task.ErrIdempotencyMismatch", created, err)
		}
		if n := countTasks(t, e, store.ListFilter{Scope: store.AdminScope}); n != 1 {
			t.Errorf("%d tasks stored, want 1", n)
		}
	})

	t.Run("no key or other keys create new tasks", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		for _, key := range []string{"", "", "key-a", "key-b"} {
			tk := e.newTask(e.echo)
			tk.IdempotencyKey, tk.RequestHash = key, "h"
			e.create(tk, &echo.Fields{Message: "m"})
		}
		if n := countTasks(t, e, store.ListFilter{Scope: store.AdminScope}); n != 4 {
			t.Errorf("%d tasks stored, want 4", n)
		}
	})

	t.Run("concurrent creates with one key make one task", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		const n = 8
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			created []uuid.UUID
			got     = map[uuid.UUID]int{}
			errs    []error
		)
		start := make(chan struct{})
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tk := e.newTask(e.echo)
				tk.IdempotencyKey, tk.RequestHash = "same-key", "same-hash"
				<-start
				rec, ok, err := e.s.CreateTask(e.ctx, &store.Record{Task: tk, Fields: &echo.Fields{Message: tk.ID.String()}, Def: e.echo})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				got[rec.Task.ID]++
				if ok {
					created = append(created, rec.Task.ID)
				}
			}()
		}
		close(start)
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("concurrent creates failed: %v", errs)
		}
		if len(created) != 1 || len(got) != 1 || got[created[0]] != n {
			t.Fatalf("concurrent creates: created %v, returned ids %v; want one task returned to all %d", created, got, n)
		}
		rec := e.get(created[0])
		if f := rec.Fields.(*echo.Fields); f.Message != created[0].String() {
			t.Errorf("stored fields %+v belong to another request", f)
		}
		if c := countTasks(t, e, store.ListFilter{Scope: store.AdminScope}); c != 1 {
			t.Errorf("%d tasks stored, want 1", c)
		}
		if evs := e.events(uuid.Nil); len(evs) != 1 {
			t.Errorf("events = %s, want one", eventTypes(evs))
		}
	})
}

// countTasks counts the tasks f selects, following every page.
func countTasks(t *testing.T, e *env, f store.ListFilter) int {
	t.Helper()
	n := 0
	f.Limit = 500
	for {
		p, err := e.s.ListTasks(e.ctx, f)
		if err != nil {
			t.Fatalf("ListTasks: %v", err)
		}
		n += len(p.Records)
		if p.NextCursor == "" {
			return n
		}
		f.Cursor = p.NextCursor
	}
}

// resultJSON is a result document used by completions.
var resultJSON = json.RawMessage(`{"artifacts": [{"key": "a.png", "url": "https://x/a.png", "content_type": "image/png", "size": 3}], "data": {"n": 1}}`)
