package storetest

import (
	"bytes"
	"encoding/base64"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/echo"
)

// newestFirst sorts tasks as ListTasks must: created_at DESC, id DESC.
func newestFirst(a, b *task.Task) int {
	if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
		return c
	}
	return bytes.Compare(b.ID[:], a.ID[:])
}

// listAll follows every page of f and returns the ids in order and the
// number of pages.
func listAll(t *testing.T, e *env, f store.ListFilter) ([]uuid.UUID, int) {
	t.Helper()
	var out []uuid.UUID
	for pages := 1; ; pages++ {
		p, err := e.s.ListTasks(e.ctx, f)
		if err != nil {
			t.Fatalf("ListTasks(%+v): %v", f, err)
		}
		if f.Limit > 0 && len(p.Records) > f.Limit {
			t.Fatalf("ListTasks returned %d records for limit %d", len(p.Records), f.Limit)
		}
		if p.Records == nil {
			t.Fatalf("ListTasks returned nil Records, want an empty slice")
		}
		for _, r := range p.Records {
			if r.Fields == nil || r.Def == nil || r.Def.Name != r.Task.Type {
				t.Fatalf("record %s has Def %v and Fields %T", r.Task.ID, r.Def, r.Fields)
			}
			out = append(out, r.Task.ID)
		}
		if p.NextCursor == "" {
			return out, pages
		}
		if pages > 1000 {
			t.Fatalf("ListTasks paginates forever")
		}
		f.Cursor = p.NextCursor
	}
}

func testListTasks(t *testing.T, newEnv func(t *testing.T) *env) {
	t.Run("filters", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		t0 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
		at := func(h int) time.Time { return t0.Add(time.Duration(h) * time.Hour) }
		mk := func(create func(func(*task.Task)) *task.Task, h int, tenant, queue string) *task.Task {
			return create(func(tk *task.Task) {
				tk.CreatedAt, tk.UpdatedAt, tk.RunAt = at(h), at(h), at(h)
				tk.OriginTenantID, tk.QueueName = tenant, queue
			})
		}
		sink := func(m func(*task.Task)) *task.Task { return e.createSink(m).Task }
		ech := func(m func(*task.Task)) *task.Task { return e.createEcho(m).Task }
		k1 := mk(sink, 0, "A", "qa")
		k2 := mk(sink, 1, "B", "qb")
		e1 := mk(ech, 2, "A", "qb")
		e2 := mk(ech, 3, "B", "qa")
		e.setStatus(store.StatusChange{TaskID: k2.ID, Change: task.Change{To: task.StatusCancelled}})
		e.setStatus(store.StatusChange{TaskID: e2.ID, Change: task.Change{To: task.StatusExecuting}})

		admin := store.AdminScope
		cases := []struct {
			name string
			f    store.ListFilter
			want []*task.Task
		}{
			{"none", store.ListFilter{Scope: admin}, []*task.Task{e2, e1, k2, k1}},
			{"task_type", store.ListFilter{Scope: admin, TaskTypes: []string{echo.Name}}, []*task.Task{e2, e1}},
			{"status cancelled", store.ListFilter{Scope: admin, Statuses: []task.Status{task.StatusCancelled}}, []*task.Task{k2}},
			{"status executing", store.ListFilter{Scope: admin, Statuses: []task.Status{task.StatusExecuting}}, []*task.Task{e2}},
			{"status pending", store.ListFilter{Scope: admin, Statuses: []task.Status{task.StatusPending}}, []*task.Task{e1, k1}},
			{"queue_name", store.ListFilter{Scope: admin, QueueNames: []string{"qa"}}, []*task.Task{e2, k1}},
			{"two statuses", store.ListFilter{Scope: admin, Statuses: []task.Status{task.StatusCancelled, task.StatusExecuting}}, []*task.Task{e2, k2}},
			{"two queues", store.ListFilter{Scope: admin, QueueNames: []string{"qb", "qa"}}, []*task.Task{e2, e1, k2, k1}},
			{"two types and a status", store.ListFilter{Scope: admin, TaskTypes: []string{echo.Name, sinkName}, Statuses: []task.Status{task.StatusPending}}, []*task.Task{e1, k1}},
			{"two statuses in a queue", store.ListFilter{Scope: admin, Statuses: []task.Status{task.StatusPending, task.StatusCancelled}, QueueNames: []string{"qb"}}, []*task.Task{e1, k2}},
			{"tenant", store.ListFilter{Scope: admin, TenantID: "A"}, []*task.Task{e1, k1}},
			{"created_after", store.ListFilter{Scope: admin, CreatedAfter: at(1).Add(30 * time.Minute)}, []*task.Task{e2, e1}},
			{"created_before", store.ListFilter{Scope: admin, CreatedBefore: at(1).Add(30 * time.Minute)}, []*task.Task{k2, k1}},
			{"time range in another zone", store.ListFilter{Scope: admin, CreatedAfter: at(0).Add(30 * time.Minute).In(zone),
				CreatedBefore: at(2).Add(30 * time.Minute).In(zone)}, []*task.Task{e1, k2}},
			{"type and tenant", store.ListFilter{Scope: admin, TaskTypes: []string{echo.Name}, TenantID: "B"}, []*task.Task{e2}},
			{"no match", store.ListFilter{Scope: admin, QueueNames: []string{"nope"}}, nil},
			{"tenant scope", store.ListFilter{Scope: store.Scope{TenantID: "A"}}, []*task.Task{e1, k1}},
			{"tenant scope and type", store.ListFilter{Scope: store.Scope{TenantID: "A"}, TaskTypes: []string{sinkName}}, []*task.Task{k1}},
			{"tenant scope hides other tenant filter", store.ListFilter{Scope: store.Scope{TenantID: "A"}, TenantID: "B"}, nil},
			{"unknown tenant scope", store.ListFilter{Scope: store.Scope{TenantID: "C"}}, nil},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				e := e.in(t)
				got, _ := listAll(t, e, tc.f)
				want := make([]uuid.UUID, len(tc.want))
				for i, w := range tc.want {
					want[i] = w.ID
				}
				if !slices.Equal(got, want) {
					t.Errorf("ListTasks = %v, want %v", got, want)
				}
			})
		}

		t.Run("records carry their type", func(t *testing.T) {
			t.Parallel()
			e := e.in(t)
			p, err := e.s.ListTasks(e.ctx, store.ListFilter{Scope: admin})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range p.Records {
				want := e.get(r.Task.ID)
				equal(t, "listed task", r.Task, want.Task)
				equal(t, "listed fields", r.Fields, want.Fields)
			}
		})
	})

	t.Run("keyset pagination with ties", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
		// Four timestamps, most of them shared by several tasks, one of
		// them with a sub-second part, and one written in another zone.
		stamps := []time.Time{base, base, base, base, base.Add(time.Microsecond), base.Add(time.Microsecond),
			base.Add(time.Second), base.Add(time.Second).In(zone), base.Add(time.Second), base.Add(time.Hour),
			base.Add(-time.Hour), base.Add(-time.Hour), base}
		var all []*task.Task
		for i, at := range stamps {
			mut := func(tk *task.Task) { tk.CreatedAt, tk.UpdatedAt = at, at }
			if i%2 == 0 {
				all = append(all, e.createSink(mut).Task)
			} else {
				all = append(all, e.createEcho(mut).Task)
			}
		}
		slices.SortFunc(all, newestFirst)
		want := make([]uuid.UUID, len(all))
		for i, tk := range all {
			want[i] = tk.ID
		}
		for _, limit := range []int{1, 2, 3, 4, 5, 13, 50} {
			got, pages := listAll(t, e, store.ListFilter{Scope: store.AdminScope, Limit: limit})
			if !slices.Equal(got, want) {
				t.Errorf("limit %d: ListTasks pages = %v, want %v", limit, got, want)
			}
			if wantPages := (len(want) + limit - 1) / limit; pages != wantPages {
				t.Errorf("limit %d: %d pages, want %d (no empty last page)", limit, pages, wantPages)
			}
		}
		// A cursor keeps the other filters.
		got, _ := listAll(t, e, store.ListFilter{Scope: store.AdminScope, Limit: 2, TaskTypes: []string{echo.Name}})
		var wantEcho []uuid.UUID
		for _, tk := range all {
			if tk.Type == echo.Name {
				wantEcho = append(wantEcho, tk.ID)
			}
		}
		if !slices.Equal(got, wantEcho) {
			t.Errorf("echo pages = %v, want %v", got, wantEcho)
		}
	})

	t.Run("bad cursor", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.createEcho(nil)
		for _, c := range []string{
			"not base64 !",
			base64.RawURLEncoding.EncodeToString([]byte("no separator")),
			base64.RawURLEncoding.EncodeToString([]byte("yesterday|" + uuid.NewString())),
			base64.RawURLEncoding.EncodeToString([]byte(time.Now().Format(time.RFC3339Nano) + "|not-a-uuid")),
		} {
			if _, err := e.s.ListTasks(e.ctx, store.ListFilter{Scope: store.AdminScope, Cursor: c}); !errors.Is(err, store.ErrBadCursor) {
				t.Errorf("ListTasks(cursor %q): err = %v, want store.ErrBadCursor", c, err)
			}
		}
	})

	t.Run("limit", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		for range 501 {
			e.createEcho(nil)
		}
		p, err := e.s.ListTasks(e.ctx, store.ListFilter{Scope: store.AdminScope})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Records) != 50 || p.NextCursor == "" {
			t.Errorf("default page: %d records, cursor %q; want 50 and a cursor", len(p.Records), p.NextCursor)
		}
		p, err = e.s.ListTasks(e.ctx, store.ListFilter{Scope: store.AdminScope, Limit: 1000})
		if err == nil && (len(p.Records) > 500 || p.NextCursor == "") {
			t.Errorf("limit 1000: %d records, cursor %q; the page size is at most 500", len(p.Records), p.NextCursor)
		}
	})
}
