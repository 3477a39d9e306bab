package storetest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

func testListEvents(t *testing.T, newEnv func(t *testing.T) *env) {
	e := newEnv(t)
	// Tenants A and B each get a task that is claimed, reports progress
	// and completes; A also has a cancelled task: 4+4+2 events.
	var tasks []*task.Task
	for _, tenant := range []string{"A", "B"} {
		rec := e.createSink(func(t *task.Task) { t.OriginTenantID = tenant })
		c := e.claim(rec.Task.ID, rec.Task.QueueName)
		if _, err := e.s.SetProgress(e.ctx, store.ProgressUpdate{TaskID: c.Task.ID, Attempt: c.Task.Attempt, Progress: 50, Lease: time.Minute, Emit: true}); err != nil {
			t.Fatal(err)
		}
		e.setStatus(store.StatusChange{TaskID: c.Task.ID, Change: task.Change{To: task.StatusCompleted, Attempt: c.Task.Attempt, Result: resultJSON}})
		tasks = append(tasks, rec.Task)
	}
	cancelled := e.createEcho(func(t *task.Task) { t.OriginTenantID = "A" }).Task
	e.setStatus(store.StatusChange{TaskID: cancelled.ID, Change: task.Change{To: task.StatusCancelled}})
	tasks = append(tasks, cancelled)

	all := e.events(uuid.Nil)
	if len(all) != 10 {
		t.Fatalf("events = %s, want 10", eventTypes(all))
	}
	// Ids strictly increase in the order the changes were made.
	wantKinds := []string{"status_update/pending", "status_update/executing", "progress_update/executing", "status_update/completed"}
	for i, ev := range all {
		if i > 0 && ev.ID <= all[i-1].ID {
			t.Errorf("event ids do not increase: %s", eventTypes(all))
		}
		if i < 8 {
			want := tasks[i/4].Type + "_" + wantKinds[i%4]
			if got := ev.EventType + "/" + string(ev.Status); got != want {
				t.Errorf("event %d = %s, want %s", i, got, want)
			}
		}
		if ev.CreatedAt.IsZero() || ev.CreatedAt.Location() != time.UTC {
			t.Errorf("event %d created_at = %s, want a UTC time", ev.ID, ev.CreatedAt)
		}
		var body event.Body
		if err := json.Unmarshal(ev.Body, &body); err != nil || body.TaskID != ev.TaskID || body.EventType != ev.EventType {
			t.Errorf("event %d body = %s (%v)", ev.ID, ev.Body, err)
		}
	}

	cases := []struct {
		name string
		f    store.EventFilter
		want []event.Event
	}{
		{"after id", store.EventFilter{Scope: store.AdminScope, AfterID: all[3].ID}, all[4:]},
		{"after the last id", store.EventFilter{Scope: store.AdminScope, AfterID: all[9].ID}, nil},
		{"limit", store.EventFilter{Scope: store.AdminScope, Limit: 3}, all[:3]},
		{"after id and limit", store.EventFilter{Scope: store.AdminScope, AfterID: all[2].ID, Limit: 2}, all[3:5]},
		{"task", store.EventFilter{Scope: store.AdminScope, TaskID: tasks[1].ID}, all[4:8]},
		{"task after id", store.EventFilter{Scope: store.AdminScope, TaskID: tasks[1].ID, AfterID: all[5].ID}, all[6:8]},
		{"tenant A", store.EventFilter{Scope: store.Scope{TenantID: "A"}}, slices.Concat(all[:4], all[8:])},
		{"tenant B", store.EventFilter{Scope: store.Scope{TenantID: "B"}}, all[4:8]},
		{"tenant A, B's task", store.EventFilter{Scope: store.Scope{TenantID: "A"}, TaskID: tasks[1].ID}, nil},
		{"unknown tenant", store.EventFilter{Scope: store.Scope{TenantID: "C"}}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := e.in(t)
			got, err := e.s.ListEvents(e.ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("ListEvents = %s, want %s", eventTypes(got), eventTypes(tc.want))
			}
			for i := range got {
				if got[i].ID != tc.want[i].ID || got[i].TaskID != tc.want[i].TaskID || got[i].TenantID != tc.want[i].TenantID ||
					!jsonEqual(got[i].Body, tc.want[i].Body) {
					t.Errorf("event %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func testAPIKeys(t *testing.T, newEnv func(t *testing.T) *env) {
	e := newEnv(t)
	if n, err := e.s.CountAPIKeys(e.ctx); err != nil || n != 0 {
		t.Fatalf("CountAPIKeys on an empty store = %d, %v", n, err)
	}
	hash := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	keys := []store.APIKey{
		{ID: uuid.New(), Hash: hash("k1"), Prefix: "cs_k1", Name: "admin key", Admin: true,
			CreatedAt: time.Date(2025, 2, 3, 4, 5, 6, 789000, zone)},
		{ID: uuid.New(), Hash: hash("k2"), Prefix: "cs_k2", Name: "tenant key", TenantID: "tenant-a",
			CreatedAt: task.Now()},
	}
	for _, k := range keys {
		if err := e.s.CreateAPIKey(e.ctx, k); err != nil {
			t.Fatalf("CreateAPIKey(%s): %v", k.Name, err)
		}
	}
	for _, k := range keys {
		got, err := e.s.LookupAPIKey(e.ctx, k.Hash)
		if err != nil {
			t.Fatalf("LookupAPIKey(%s): %v", k.Name, err)
		}
		want := k
		want.CreatedAt = k.CreatedAt.UTC()
		equal(t, "api key", got, &want)
	}
	if _, err := e.s.LookupAPIKey(e.ctx, hash("unknown")); !errors.Is(err, store.ErrKeyNotFound) {
		t.Errorf("LookupAPIKey(unknown): err = %v, want store.ErrKeyNotFound", err)
	}
	dup := keys[0]
	dup.ID = uuid.New()
	if err := e.s.CreateAPIKey(e.ctx, dup); err == nil {
		t.Errorf("CreateAPIKey with a stored hash succeeded")
	}
	if n, err := e.s.CountAPIKeys(e.ctx); err != nil || n != len(keys) {
		t.Errorf("CountAPIKeys = %d, %v; want %d", n, err, len(keys))
	}
	testRevokeAPIKeys(t, e, keys)
}

// testRevokeAPIKeys lists keys (oldest first), revokes one for good and
// checks that a revoked key is refused and no longer counted.
func testRevokeAPIKeys(t *testing.T, e *env, keys []store.APIKey) {
	t.Helper()
	listed, err := e.s.ListAPIKeys(e.ctx)
	if err != nil || len(listed) != len(keys) {
		t.Fatalf("ListAPIKeys = %d keys, %v; want %d", len(listed), err, len(keys))
	}
	for i := range keys {
		if listed[i].ID != keys[i].ID || listed[i].RevokedAt != nil {
			t.Errorf("ListAPIKeys[%d] = %+v, want key %s, active", i, listed[i], keys[i].Name)
		}
	}
	revoked, err := e.s.RevokeAPIKey(e.ctx, keys[1].ID)
	if err != nil || revoked.RevokedAt == nil || revoked.ID != keys[1].ID {
		t.Fatalf("RevokeAPIKey = %+v, %v; want the key with a revocation time", revoked, err)
	}
	again, err := e.s.RevokeAPIKey(e.ctx, keys[1].ID)
	if err != nil || again.RevokedAt == nil || !again.RevokedAt.Equal(*revoked.RevokedAt) {
		t.Errorf("revoking again = %+v, %v; want the first revocation kept", again, err)
	}
	if _, err := e.s.RevokeAPIKey(e.ctx, uuid.New()); !errors.Is(err, store.ErrKeyNotFound) {
		t.Errorf("RevokeAPIKey(unknown id): err = %v, want store.ErrKeyNotFound", err)
	}
	if _, err := e.s.LookupAPIKey(e.ctx, keys[1].Hash); !errors.Is(err, store.ErrKeyRevoked) || !errors.Is(err, store.ErrKeyNotFound) {
		t.Errorf("LookupAPIKey(revoked): err = %v, want store.ErrKeyRevoked (an ErrKeyNotFound)", err)
	}
	if _, err := e.s.LookupAPIKey(e.ctx, keys[0].Hash); err != nil {
		t.Errorf("LookupAPIKey(active) after another's revocation: %v", err)
	}
	if n, err := e.s.CountAPIKeys(e.ctx); err != nil || n != len(keys)-1 {
		t.Errorf("CountAPIKeys after a revocation = %d, %v; want %d", n, err, len(keys)-1)
	}
	if listed, err = e.s.ListAPIKeys(e.ctx); err != nil || len(listed) != len(keys) || listed[1].RevokedAt == nil {
		t.Errorf("ListAPIKeys after a revocation = %+v, %v; want every key, the second revoked", listed, err)
	}
}

func testMigrations(t *testing.T, newEnv func(t *testing.T) *env) {
	e := newEnv(t)
	st, err := e.s.MigrationStatus(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	sources := map[string]int{}
	for i, m := range st {
		if !m.Applied || m.AppliedAt.IsZero() {
			t.Errorf("migration %d (%s) not applied after Migrate: %+v", m.Version, m.Source, m)
		}
		if i > 0 && m.Version <= st[i-1].Version {
			t.Errorf("migration versions not increasing: %d after %d", m.Version, st[i-1].Version)
		}
		owner, file, ok := strings.Cut(m.Source, "/")
		if !ok || !strings.HasPrefix(file, strconv.FormatInt(m.Version, 10)+"_") || !strings.HasSuffix(file, ".sql") {
			t.Errorf("migration %d: Source %q, want \"<owner>/<version>_<name>.sql\"", m.Version, m.Source)
		}
		sources[owner]++
	}
	for _, owner := range []string{"core", "task type " + sinkName, "task type echo"} {
		if sources[owner] == 0 {
			t.Errorf("no migration from %q in %v", owner, sources)
		}
	}
	if len(sources) != 3 {
		t.Errorf("migration owners = %v, want core and the two types", sources)
	}
	found := false
	for _, m := range st {
		found = found || (m.Version == 20260101000900 && m.Source == "task type kitchensink/20260101000900_kitchensink.sql")
	}
	if !found {
		t.Errorf("the kitchensink migration is missing from %+v", st)
	}

	if err := e.s.Migrate(e.ctx); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	again, err := e.s.MigrationStatus(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != len(st) {
		t.Fatalf("after a second Migrate: %d migrations, had %d", len(again), len(st))
	}
	for i := range st {
		a, b := st[i], again[i]
		if a.Version != b.Version || a.Source != b.Source || a.Applied != b.Applied || !a.AppliedAt.Equal(b.AppliedAt) {
			t.Errorf("a second Migrate changed %+v to %+v", a, b)
		}
	}
	// The schema still works.
	e.createSink(nil)
}
