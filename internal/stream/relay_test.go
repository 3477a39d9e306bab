package stream_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/goleak"

	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/store/sqlstore"
	"github.com/computeserver/compute/internal/stream"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/echo"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitLimit bounds every wait.
const waitLimit = 15 * time.Second

// env is one test's database, written through a store whose committed
// events go to an in-process bus.
type env struct {
	t   *testing.T
	dsn string
	st  *sqlstore.Store
	reg *registry.Registry
	bus *event.InProc
}

func newEnv(t *testing.T, dialect string) *env {
	t.Helper()
	reg := registry.New()
	reg.MustRegister(echo.Type())
	bus := event.NewInProc()
	dsn := testdb.URL(t, dialect)
	st, err := sqlstore.Open(t.Context(), dsn, reg, testdb.Logger(t),
		sqlstore.WithEventSink(func(evs []event.Event) { _ = bus.Publish(context.Background(), evs) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, dsn: dsn, st: st, reg: reg, bus: bus}
}

// relay starts a relay over the env's store; stopped when the test ends.
func (e *env) relay(cfg stream.Config, bus event.Bus, notes stream.Notifier) *stream.Relay {
	e.t.Helper()
	return e.relayOver(cfg, e.st, bus, notes)
}

func (e *env) relayOver(cfg stream.Config, log stream.EventLog, bus event.Bus, notes stream.Notifier) *stream.Relay {
	e.t.Helper()
	r := stream.New(cfg, log, bus, notes, testdb.Logger(e.t))
	if err := r.Start(e.t.Context()); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(r.Stop)
	return r
}

// create stores a pending echo task of tenant (one event) and returns it.
func (e *env) create(tenant string) *task.Task {
	e.t.Helper()
	def, _ := e.reg.Lookup(echo.Name)
	now := task.Now()
	tk := &task.Task{
		ID: uuid.Must(uuid.NewV7()), Type: echo.Name, Status: task.StatusPending, ProviderType: def.DefaultProvider,
		QueueName: def.DefaultQueue, CreatedAt: now, UpdatedAt: now, RunAt: now.Add(time.Hour), MaxAttempts: 1,
		TimeoutSeconds: 60, Errors: []task.Error{}, OriginTenantID: tenant,
	}
	if _, _, err := e.st.CreateTask(context.Background(), &store.Record{Task: tk, Fields: &echo.Fields{Message: "x"}, Def: def}); err != nil {
		e.t.Errorf("CreateTask: %v", err)
	}
	return tk
}

// cancel cancels a pending task (one more event).
func (e *env) cancel(id uuid.UUID) {
	e.t.Helper()
	if _, _, err := e.st.SetStatus(context.Background(), store.StatusChange{TaskID: id, Scope: store.AdminScope, Change: task.Change{To: task.StatusCancelled}}); err != nil {
		e.t.Errorf("SetStatus: %v", err)
	}
}

// logged returns the events the log holds for f after an id.
func (e *env) logged(f stream.Filter, after int64) []event.Event {
	e.t.Helper()
	evs, err := e.st.ListEvents(context.Background(), f.EventFilter(after, 100000))
	if err != nil {
		e.t.Fatal(err)
	}
	return evs
}

// collect takes n events from the follower, failing after waitLimit.
func collect(t *testing.T, fw *stream.Follower, n int) []event.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	var got []event.Event
	for len(got) < n {
		evs, err := fw.Next(ctx, nil)
		if err != nil {
			t.Fatalf("after %d of %d events: %v", len(got), n, err)
		}
		got = append(got, evs...)
	}
	return got
}

// quiet asserts the follower has nothing more within d.
func quiet(t *testing.T, fw *stream.Follower, d time.Duration) {
	t.Helper()
	evs, err := fw.Next(t.Context(), time.After(d))
	if err != nil || len(evs) != 0 {
		t.Fatalf("expected nothing more; got %d events (%v)", len(evs), err)
	}
}

func ids(evs []event.Event) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

// sameIDs fails unless got and want hold the same ids in the same order.
func sameIDs(t *testing.T, got, want []event.Event) {
	t.Helper()
	if !slices.Equal(ids(got), ids(want)) {
		t.Fatalf("event ids\n got %v\nwant %v", ids(got), ids(want))
	}
}

func forEachDB(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, d := range testdb.Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			fn(t, newEnv(t, d))
		})
	}
}

// TestFollowReplayThenLive replays what happened before, then continues
// live, each event once, in id order.
func TestFollowReplayThenLive(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		r := e.relay(stream.Config{PageSize: 2}, e.bus, e.st)
		before := []*task.Task{e.create(""), e.create(""), e.create("")}
		fw, err := r.Follow(t.Context(), stream.Filter{Scope: store.AdminScope}, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer fw.Close()
		got := collect(t, fw, 3) // replayed, in pages of 2
		go func() {
			e.cancel(before[0].ID)
			e.create("")
		}()
		got = append(got, collect(t, fw, 2)...) // live
		quiet(t, fw, 200*time.Millisecond)
		sameIDs(t, got, e.logged(stream.Filter{Scope: store.AdminScope}, 0))

		// From the middle: only what came after.
		mid, err := r.Follow(t.Context(), stream.Filter{Scope: store.AdminScope}, got[2].ID)
		if err != nil {
			t.Fatal(err)
		}
		defer mid.Close()
		sameIDs(t, collect(t, mid, 2), got[3:])
		quiet(t, mid, 100*time.Millisecond)

		// From now: nothing of the past.
		now, err := r.Follow(t.Context(), stream.Filter{Scope: store.AdminScope}, -1)
		if err != nil {
			t.Fatal(err)
		}
		defer now.Close()
		if now.Last() != got[4].ID {
			t.Errorf("following from now starts after %d, want the last event %d", now.Last(), got[4].ID)
		}
		quiet(t, now, 100*time.Millisecond)
		tk := e.create("")
		if evs := collect(t, now, 1); evs[0].TaskID != tk.ID {
			t.Errorf("got an event of %s, want the new task's", evs[0].TaskID)
		}
	})
}

// TestFollowFilters gives each follower exactly the log's events for its
// filter, live; a tenant scope never sees another tenant's events.
func TestFollowFilters(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		r := e.relay(stream.Config{}, e.bus, e.st)
		probe := e.create("acme")
		filters := []struct {
			name string
			f    stream.Filter
		}{
			{"admin", stream.Filter{Scope: store.AdminScope}},
			{"tenant acme", stream.Filter{Scope: store.Scope{TenantID: "acme"}}},
			{"tenant other", stream.Filter{Scope: store.Scope{TenantID: "other"}}},
			{"admin, origin_tenant_id acme", stream.Filter{Scope: store.AdminScope, TenantID: "acme"}},
			{"status cancelled", stream.Filter{Scope: store.AdminScope, Statuses: []task.Status{task.StatusCancelled}}},
			{"task type echo", stream.Filter{Scope: store.AdminScope, TaskTypes: []string{echo.Name}}},
			{"task type none", stream.Filter{Scope: store.AdminScope, TaskTypes: []string{"generation"}}},
			{"two statuses", stream.Filter{Scope: store.AdminScope, Statuses: []task.Status{task.StatusCancelled, task.StatusPending}}},
			{"two task types", stream.Filter{Scope: store.AdminScope, TaskTypes: []string{"generation", echo.Name}}},
			{"one task", stream.Filter{Scope: store.AdminScope, TaskID: probe.ID}},
			{"acme, other's status", stream.Filter{Scope: store.Scope{TenantID: "acme"}, Statuses: []task.Status{task.StatusCancelled}, TenantID: "other"}},
		}
		start := e.logged(stream.Filter{Scope: store.AdminScope}, 0)[0].ID
		fws := make([]*stream.Follower, len(filters))
		for i, f := range filters {
			fw, err := r.Follow(t.Context(), f.f, start)
			if err != nil {
				t.Fatal(err)
			}
			defer fw.Close()
			fws[i] = fw
		}
		for i, tenant := range []string{"acme", "other", "", "acme", "other"} {
			tk := e.create(tenant)
			if i%2 == 0 {
				e.cancel(tk.ID)
			}
		}
		e.cancel(probe.ID)
		for i, f := range filters {
			want := e.logged(f.f, start)
			got := collect(t, fws[i], len(want))
			quiet(t, fws[i], 50*time.Millisecond)
			t.Run(f.name, func(t *testing.T) { sameIDs(t, got, want) })
			for _, ev := range got {
				if !f.f.Match(ev) {
					t.Errorf("%s: event %d (%s, tenant %q) does not match", f.name, ev.ID, ev.Status, ev.TenantID)
				}
			}
		}
		if n := len(e.logged(filters[2].f, 0)); n != 3 {
			t.Errorf("tenant other has %d events in the log, want 3", n)
		}
		// A list filter is the union of its values' filters.
		one := func(f stream.Filter) int { return len(e.logged(f, start)) }
		cancelled, pending := one(filters[4].f), one(stream.Filter{Scope: store.AdminScope, Statuses: []task.Status{task.StatusPending}})
		if both := one(filters[7].f); both != cancelled+pending || cancelled == 0 || pending == 0 {
			t.Errorf("two statuses: %d events, want %d cancelled + %d pending", both, cancelled, pending)
		}
		if n, all := one(filters[8].f), one(filters[0].f); n != all {
			t.Errorf("two task types (generation, echo): %d events, want all %d", n, all)
		}
	})
}

// TestSlowSubscriberCatchesUp lets a subscription overflow: the relay ends
// it without waiting, and the follower catches up from the log, still
// giving every event once, in order.
func TestSlowSubscriberCatchesUp(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		r := e.relay(stream.Config{Buffer: 4, PageSize: 3}, e.bus, e.st)
		sub, err := r.Subscribe(t.Context(), stream.Filter{Scope: store.AdminScope})
		if err != nil {
			t.Fatal(err)
		}
		fw, err := r.Follow(t.Context(), stream.Filter{Scope: store.AdminScope}, -1)
		if err != nil {
			t.Fatal(err)
		}
		defer fw.Close()
		start := fw.Last()
		for range 20 {
			e.create("")
		}
		// The raw subscription, never read, is ended for falling behind.
		deadline := time.After(waitLimit)
		for open := true; open; {
			select {
			case _, open = <-sub.Events():
			case <-deadline:
				t.Fatal("the overflowing subscription was not ended")
			}
		}
		if !errors.Is(sub.Err(), stream.ErrLagged) {
			t.Errorf("subscription ended with %v, want ErrLagged", sub.Err())
		}
		got := collect(t, fw, 20)
		quiet(t, fw, 100*time.Millisecond)
		sameIDs(t, got, e.logged(stream.Filter{Scope: store.AdminScope}, start))
		// It is live again after catching up.
		tk := e.create("")
		if evs := collect(t, fw, 1); evs[0].TaskID != tk.ID {
			t.Errorf("after catching up: event of %s, want %s", evs[0].TaskID, tk.ID)
		}
	})
}

// TestConcurrentWriters follows while several goroutines commit at once:
// on PostgreSQL ids are allocated out of commit order without the event
// lock, so this is where a gap would show.
func TestConcurrentWriters(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		r := e.relay(stream.Config{PageSize: 7}, e.bus, e.st)
		fws := make([]*stream.Follower, 3)
		for i := range fws {
			fw, err := r.Follow(t.Context(), stream.Filter{Scope: store.AdminScope}, -1)
			if err != nil {
				t.Fatal(err)
			}
			defer fw.Close()
			fws[i] = fw
		}
		start := fws[0].Last()
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range 15 {
					tk := e.create("")
					e.cancel(tk.ID)
				}
			})
		}
		results := make([][]event.Event, len(fws))
		var rg sync.WaitGroup
		for i, fw := range fws {
			rg.Go(func() { results[i] = collect(t, fw, 120) })
		}
		begin := time.Now()
		wg.Wait()
		t.Logf("writers done after %s", time.Since(begin))
		rg.Wait()
		t.Logf("readers done after %s", time.Since(begin))
		want := e.logged(stream.Filter{Scope: store.AdminScope}, start)
		for _, got := range results {
			sameIDs(t, got, want)
		}
	})
}

// TestWakeSources shows each wake-up source alone brings events within a
// moment while the poll is an hour away: the bus, and the database's
// notifications (PostgreSQL NOTIFY across processes; SQLite in process).
func TestWakeSources(t *testing.T) {
	t.Parallel()
	for _, src := range []string{"bus", "notifications"} {
		t.Run(src, func(t *testing.T) {
			t.Parallel()
			forEachDB(t, func(t *testing.T, e *env) {
				cfg := stream.Config{PollInterval: time.Hour}
				var r *stream.Relay
				if src == "bus" {
					r = e.relay(cfg, e.bus, nil)
				} else {
					r = e.relay(cfg, nil, e.st)
				}
				fw, err := r.Follow(t.Context(), stream.Filter{Scope: store.AdminScope}, -1)
				if err != nil {
					t.Fatal(err)
				}
				defer fw.Close()
				for i := range 3 {
					begin := time.Now()
					tk := e.create("")
					ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
					evs, err := fw.Next(ctx, nil)
					cancel()
					if err != nil || len(evs) != 1 || evs[0].TaskID != tk.ID {
						t.Fatalf("event %d: %d events, %v", i, len(evs), err)
					}
					t.Logf("event %d arrived %s after the create began", i, time.Since(begin))
				}
			})
		})
	}
}

// countingLog counts the relay's reads of the log.
type countingLog struct {
	stream.EventLog
	reads atomic.Int64
}

func (c *countingLog) ListEvents(ctx context.Context, f store.EventFilter) ([]event.Event, error) {
	c.reads.Add(1)
	return c.EventLog.ListEvents(ctx, f)
}

// TestIdleRelayReadsNothing: without subscribers, wake-ups cost no query;
// the first subscriber starts at the log's end.
func TestIdleRelayReadsNothing(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		log := &countingLog{EventLog: e.st}
		r := e.relayOver(stream.Config{PollInterval: 10 * time.Millisecond}, log, e.bus, e.st)
		for range 5 {
			e.create("")
			r.Wake()
		}
		time.Sleep(100 * time.Millisecond)
		if n := log.reads.Load(); n != 0 {
			t.Errorf("an idle relay read the log %d times", n)
		}
		last, err := e.st.LastEventID(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		sub, err := r.Subscribe(t.Context(), stream.Filter{Scope: store.AdminScope})
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		if sub.From() != last || last == 0 {
			t.Errorf("first subscription starts after %d, want the last event %d", sub.From(), last)
		}
		if r.Subscribers() != 1 {
			t.Errorf("Subscribers() = %d", r.Subscribers())
		}
		tk := e.create("")
		select {
		case ev := <-sub.Events():
			if ev.TaskID != tk.ID {
				t.Errorf("got %s's event, want %s's", ev.TaskID, tk.ID)
			}
		case <-time.After(waitLimit):
			t.Fatal("no live event")
		}
		sub.Close()
		sub.Close() // idempotent
		if sub.Err() != nil || r.Subscribers() != 0 {
			t.Errorf("after Close: err %v, %d subscribers", sub.Err(), r.Subscribers())
		}
	})
}

// TestStopEndsFollowers: a stopping relay ends every follower with
// ErrStopped and refuses new ones.
func TestStopEndsFollowers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "sqlite")
	r := stream.New(stream.Config{}, e.st, e.bus, e.st, testdb.Logger(t))
	if err := r.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(t.Context()); err == nil {
		t.Error("a second Start succeeded")
	}
	fw, err := r.Follow(t.Context(), stream.Filter{Scope: store.AdminScope}, -1)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := fw.Next(t.Context(), nil)
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	r.Stop()
	r.Stop()
	select {
	case err := <-errc:
		if !errors.Is(err, stream.ErrStopped) {
			t.Errorf("Next = %v, want ErrStopped", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("a follower outlived its relay")
	}
	if _, err := r.Follow(t.Context(), stream.Filter{Scope: store.AdminScope}, 0); !errors.Is(err, stream.ErrStopped) {
		t.Errorf("Follow after Stop = %v, want ErrStopped", err)
	}
	never := stream.New(stream.Config{}, e.st, nil, nil, nil)
	never.Stop() // a relay never started stops at once
}
