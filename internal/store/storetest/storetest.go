// Package storetest is the conformance suite of store.Store: every
// implementation (today sqlstore over SQLite and over PostgreSQL) must pass
// Run. It registers two task types, a test-only "kitchensink" type whose
// fields cover every column kind and echo, and gives every subtest its own
// fresh database.
//
// Not covered: that DeleteTask removes the type row (the suite has no raw
// database access); the store deletes it, and the type migrations declare
// the ON DELETE CASCADE foreign key besides.
package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/echo"
)

// Run runs the conformance suite. open must return a new, empty, migrated
// store for the registry's task types; it is called once per subtest, and
// the store must be closed when that test ends (t.Cleanup).
func Run(t *testing.T, open func(t *testing.T, reg *registry.Registry) store.Store) {
	t.Helper()
	reg := newRegistry()
	newEnv := func(t *testing.T) *env {
		t.Helper()
		s := open(t, reg)
		ks, _ := reg.Lookup(sinkName)
		ec, _ := reg.Lookup(echo.Name)
		return &env{t: t, ctx: t.Context(), s: s, reg: reg, sink: ks, echo: ec}
	}
	groups := []struct {
		name string
		run  func(t *testing.T, newEnv func(t *testing.T) *env)
	}{
		{"Basics", testBasics},
		{"CreateGet", testCreateGet},
		{"Idempotency", testIdempotency},
		{"ListTasks", testListTasks},
		{"UpdateTask", testUpdateTask},
		{"SetStatus", testSetStatus},
		{"ClaimTasks", testClaimTasks},
		{"RunWrites", testRunWrites},
		{"ListEvents", testListEvents},
		{"APIKeys", testAPIKeys},
		{"Migrations", testMigrations},
		{"Webhooks", testWebhooks},
		{"WebhookFairness", testWebhookFairness},
		{"WebhookEndpoints", testEndpoints},
		{"ExecutorGates", testExecutorGates},
		{"Inbox", testInbox},
		{"DeleteTask", testDeleteTask},
		{"ArtifactExpiry", testArtifactExpiry},
		{"Monitor", testMonitor},
		{"Usage", testUsage},
		{"Scheduling", testScheduling},
		{"Workflows", testWorkflows},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			g.run(t, newEnv)
		})
	}
}

// env is one subtest's store with the helpers the tests share.
type env struct {
	t    *testing.T
	ctx  context.Context
	s    store.Store
	reg  *registry.Registry
	sink *registry.Definition
	echo *registry.Definition
}

// in returns a copy of e bound to the subtest t, sharing its store.
func (e *env) in(t *testing.T) *env {
	c := *e
	c.t, c.ctx = t, t.Context()
	return &c
}

// newTask returns a pending task of def with the usual defaults, created
// now, in its own queue so that claims in a shared store can target it.
func (e *env) newTask(def *registry.Definition) *task.Task {
	now := task.Now()
	return &task.Task{
		ID:             uuid.New(),
		Type:           def.Name,
		Status:         task.StatusPending,
		ProviderType:   def.DefaultProvider,
		QueueName:      "q-" + uuid.NewString()[:8],
		CreatedAt:      now,
		UpdatedAt:      now,
		RunAt:          now,
		MaxAttempts:    def.MaxAttempts,
		TimeoutSeconds: int(def.Timeout / time.Second),
		Errors:         []task.Error{},
		WebhookEvents:  []string{},
	}
}

// create stores a task and fails the test unless it was created.
func (e *env) create(t *task.Task, fields any) *store.Record {
	e.t.Helper()
	def, ok := e.reg.Lookup(t.Type)
	if !ok {
		e.t.Fatalf("unknown type %q", t.Type)
	}
	rec, created, err := e.s.CreateTask(e.ctx, &store.Record{Task: t, Fields: fields, Def: def})
	if err != nil {
		e.t.Fatalf("CreateTask(%s): %v", t.ID, err)
	}
	if !created {
		e.t.Fatalf("CreateTask(%s): created=false for a new task", t.ID)
	}
	return rec
}

// createSink creates a pending kitchensink task; mut may adjust it first.
func (e *env) createSink(mut func(*task.Task)) *store.Record {
	e.t.Helper()
	t := e.newTask(e.sink)
	if mut != nil {
		mut(t)
	}
	return e.create(t, &sinkFields{Name: "sink " + t.ID.String()[:8], At: task.Now()})
}

// createEcho creates a pending echo task; mut may adjust it first.
func (e *env) createEcho(mut func(*task.Task)) *store.Record {
	e.t.Helper()
	t := e.newTask(e.echo)
	if mut != nil {
		mut(t)
	}
	return e.create(t, &echo.Fields{Message: "hello " + t.ID.String()[:8]})
}

// get loads a task with admin scope, failing the test on an error.
func (e *env) get(id uuid.UUID) *store.Record {
	e.t.Helper()
	rec, err := e.s.GetTask(e.ctx, id, store.AdminScope)
	if err != nil {
		e.t.Fatalf("GetTask(%s): %v", id, err)
	}
	return rec
}

// events lists every event of one task (or of every task for uuid.Nil).
func (e *env) events(id uuid.UUID) []event.Event {
	e.t.Helper()
	evs, err := e.s.ListEvents(e.ctx, store.EventFilter{TaskID: id, Scope: store.AdminScope, Limit: 100000})
	if err != nil {
		e.t.Fatalf("ListEvents(%s): %v", id, err)
	}
	return evs
}

// claim claims the one task in queue q, failing unless exactly that task
// is claimed.
func (e *env) claim(id uuid.UUID, queue string) *store.Record {
	e.t.Helper()
	recs, err := e.s.ClaimTasks(e.ctx, store.ClaimParams{Worker: "worker-1", Limit: 5, Lease: time.Minute, Queues: []string{queue}})
	if err != nil {
		e.t.Fatalf("ClaimTasks(%s): %v", queue, err)
	}
	if len(recs) != 1 || recs[0].Task.ID != id {
		e.t.Fatalf("ClaimTasks(%s) = %s, want exactly task %s", queue, ids(recs), id)
	}
	return recs[0]
}

// setStatus applies a change that must succeed.
func (e *env) setStatus(c store.StatusChange) (*task.Task, *event.Event) {
	e.t.Helper()
	if c.Scope == (store.Scope{}) {
		c.Scope = store.AdminScope
	}
	t, ev, err := e.s.SetStatus(e.ctx, c)
	if err != nil {
		e.t.Fatalf("SetStatus(%s → %s): %v", c.TaskID, c.To, err)
	}
	return t, ev
}

// reach creates a kitchensink task and drives it to status st the way the
// engine would; it returns the task as stored.
func (e *env) reach(st task.Status) *store.Record {
	e.t.Helper()
	rec := e.createSink(nil)
	id, q := rec.Task.ID, rec.Task.QueueName
	switch st {
	case task.StatusPending:
	case task.StatusExecuting:
		e.claim(id, q)
	case task.StatusCompleted:
		c := e.claim(id, q)
		e.setStatus(store.StatusChange{TaskID: id, Change: task.Change{To: st, Attempt: c.Task.Attempt, Result: json.RawMessage(`{"artifacts":[]}`)}})
	case task.StatusFailed, task.StatusCancelled:
		e.setStatus(store.StatusChange{TaskID: id, Change: task.Change{To: st}})
	default:
		e.t.Fatalf("reach: unknown status %q", st)
	}
	got := e.get(id)
	if got.Task.Status != st {
		e.t.Fatalf("reach(%s): task is %s", st, got.Task.Status)
	}
	return got
}

// assertUnchanged fails when the stored task differs from before or has
// events beyond evs: a refused change must write nothing.
func (e *env) assertUnchanged(before *store.Record, evs []event.Event) {
	e.t.Helper()
	after := e.get(before.Task.ID)
	equal(e.t, "task after a refused change", after.Task, before.Task)
	equal(e.t, "fields after a refused change", after.Fields, before.Fields)
	if now := e.events(before.Task.ID); len(now) != len(evs) {
		e.t.Errorf("a refused change wrote events: had %d, now %d: %s", len(evs), len(now), eventTypes(now))
	}
}

// equal fails the test when got and want differ (reflect.DeepEqual),
// printing both as JSON and as Go values.
func equal(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(want)
		t.Errorf("%s differs\n got: %s\nwant: %s\n got: %#v\nwant: %#v", what, gj, wj, got, want)
	}
}

// equalTask is equal for tasks, except that Result is compared as a JSON
// value: PostgreSQL's jsonb does not keep the bytes it was given.
func equalTask(t *testing.T, what string, got, want *task.Task) {
	t.Helper()
	if got == nil || want == nil {
		if got != want {
			t.Errorf("%s: got %v, want %v", what, got, want)
		}
		return
	}
	g, w := *got, *want
	if (g.Result == nil) != (w.Result == nil) || (g.Result != nil && !jsonEqual(g.Result, w.Result)) {
		t.Errorf("%s: result %s, want %s", what, g.Result, w.Result)
	}
	g.Result, w.Result = nil, nil
	equal(t, what, &g, &w)
}

// jsonEqual reports whether two JSON documents are equal as values.
func jsonEqual(a, b []byte) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

func ids(recs []*store.Record) []uuid.UUID {
	out := make([]uuid.UUID, len(recs))
	for i, r := range recs {
		out[i] = r.Task.ID
	}
	return out
}

func eventTypes(evs []event.Event) string {
	s := "["
	for i, e := range evs {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%d:%s/%s", e.ID, e.EventType, e.Status)
	}
	return s + "]"
}

// within fails unless lo <= got <= hi.
func within(t *testing.T, what string, got *time.Time, lo, hi time.Time) {
	t.Helper()
	switch {
	case got == nil:
		t.Errorf("%s is nil, want a time in [%s, %s]", what, lo, hi)
	case got.Before(lo) || got.After(hi):
		t.Errorf("%s = %s, want a time in [%s, %s]", what, got, lo, hi)
	case got.Location() != time.UTC:
		t.Errorf("%s = %s is not in UTC", what, got)
	}
}

// testBasics checks the small methods.
func testBasics(t *testing.T, newEnv func(t *testing.T) *env) {
	e := newEnv(t)
	if err := e.s.Ping(e.ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
	switch d := e.s.Dialect(); d {
	case "sqlite", "postgres":
	default:
		t.Errorf("Dialect() = %q, want sqlite or postgres", d)
	}
	if c := e.s.Capabilities(); c.ListenNotify && !c.SkipLocked {
		t.Errorf("Capabilities() = %+v: a database with LISTEN/NOTIFY here is PostgreSQL, which skips locks", c)
	}
}
