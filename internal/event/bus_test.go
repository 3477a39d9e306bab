package event_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/testutil/tcpproxy"
	"github.com/computeserver/compute/internal/testutil/testdb"
	"github.com/computeserver/compute/internal/testutil/testredis"
)

func TestMain(m *testing.M) {
	// go-redis probes a server that refused dials from a goroutine that
	// notices a closed client within a second.
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}

// waitLimit bounds every wait.
const waitLimit = 10 * time.Second

// sample returns n events with consecutive ids from first, alternating
// tenants, as a transaction would commit them.
func sample(first int64, n int) []event.Event {
	out := make([]event.Event, n)
	for i := range out {
		tk := &task.Task{
			ID: uuid.Must(uuid.NewV7()), Type: "echo", Status: task.StatusExecuting, QueueName: "default",
			OriginTenantID: []string{"acme", ""}[i%2], Progress: float64(10 * i),
		}
		kind := event.KindStatus
		if i%3 == 2 {
			kind = event.KindProgress
		}
		out[i] = event.New(tk, kind, task.Now())
		out[i].ID = first + int64(i)
	}
	return out
}

// receive collects n events from ch, skipping empty (wake-up) batches.
func receive(t *testing.T, ch <-chan []event.Event, n int) []event.Event {
	t.Helper()
	var got []event.Event
	deadline := time.After(waitLimit)
	for len(got) < n {
		select {
		case b, ok := <-ch:
			if !ok {
				t.Fatalf("subscription closed after %d of %d events", len(got), n)
			}
			got = append(got, b...)
		case <-deadline:
			t.Fatalf("received %d of %d events in %s", len(got), n, waitLimit)
		}
	}
	return got
}

// sameEvents compares what a subscriber needs of an event.
func sameEvents(t *testing.T, got, want []event.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.ID != w.ID || g.TaskID != w.TaskID || g.TaskType != w.TaskType || g.EventType != w.EventType ||
			g.Status != w.Status || g.TenantID != w.TenantID || g.Kind != w.Kind || !g.CreatedAt.Equal(w.CreatedAt) ||
			string(g.Body) != string(w.Body) {
			t.Errorf("event %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
}

func TestInProcBus(t *testing.T) {
	t.Parallel()
	bus := event.NewInProc()
	ctx, cancel := context.WithCancel(t.Context())
	a, b := bus.Subscribe(ctx), bus.Subscribe(ctx)
	evs := sample(1, 5)
	if err := bus.Publish(ctx, evs[:2]); err != nil {
		t.Fatal(err)
	}
	if err := bus.Publish(ctx, evs[2:]); err != nil {
		t.Fatal(err)
	}
	sameEvents(t, receive(t, a, 5), evs)
	sameEvents(t, receive(t, b, 5), evs)
	cancel()
	for _, ch := range []<-chan []event.Event{a, b} {
		select {
		case _, ok := <-ch:
			if ok {
				t.Error("a subscription delivered after its context ended")
			}
		case <-time.After(waitLimit):
			t.Error("a subscription was not closed when its context ended")
		}
	}
	// Publishing with nobody listening, or faster than anyone reads,
	// never blocks.
	slow := bus.Subscribe(t.Context())
	for i := range 10000 {
		if err := bus.Publish(t.Context(), sample(int64(i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	if len(slow) == 0 {
		t.Error("the slow subscriber got nothing")
	}
}

// newRedisBus returns a bus on the test Redis with its own prefix, or with
// prefix when given.
func newRedisBus(t *testing.T, url string, prefix ...string) *event.RedisBus {
	t.Helper()
	p := testredis.Prefix(t)
	if len(prefix) > 0 {
		p = prefix[0]
	}
	bus, err := event.NewRedis(url, p, testdb.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bus.Close() })
	return bus
}

// waitConnected waits for the empty batch that confirms a subscription.
func waitConnected(t *testing.T, ch <-chan []event.Event) {
	t.Helper()
	select {
	case b := <-ch:
		if len(b) != 0 {
			t.Fatalf("first batch has %d events, want the empty connect announcement", len(b))
		}
	case <-time.After(waitLimit):
		t.Fatal("the redis subscription was not confirmed")
	}
}

func TestRedisBusPublishSubscribe(t *testing.T) {
	t.Parallel()
	url := testredis.URL(t)
	prefix := testredis.Prefix(t)
	// Two buses on one channel: two processes.
	pub, sub := newRedisBus(t, url, prefix), newRedisBus(t, url, prefix)
	if pub.Channel() != prefix+":events" {
		t.Errorf("channel %q, want %q", pub.Channel(), prefix+":events")
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	remote, local := sub.Subscribe(ctx), pub.Subscribe(ctx)
	waitConnected(t, remote)
	waitConnected(t, local)

	evs := sample(100, 7)
	if err := pub.Publish(ctx, evs[:3]); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, evs[3:]); err != nil {
		t.Fatal(err)
	}
	sameEvents(t, receive(t, remote, 7), evs)
	sameEvents(t, receive(t, local, 7), evs) // the publisher hears itself too
}

// TestRedisMessageFormat reads the channel as an external consumer would:
// a plain Redis client, one JSON message per event.
func TestRedisMessageFormat(t *testing.T) {
	t.Parallel()
	url := testredis.URL(t)
	bus := newRedisBus(t, url)
	opts, _ := redis.ParseURL(url)
	c := redis.NewClient(opts)
	defer c.Close()
	ps := c.Subscribe(t.Context(), bus.Channel())
	defer ps.Close()
	if _, err := ps.Receive(t.Context()); err != nil {
		t.Fatal(err)
	}
	evs := sample(41, 2)
	if err := bus.Publish(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	for _, want := range evs {
		ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
		msg, err := ps.ReceiveMessage(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(msg.Payload), &m); err != nil {
			t.Fatalf("payload %s: %v", msg.Payload, err)
		}
		body, _ := m["body"].(map[string]any)
		if m["id"] != float64(want.ID) || m["task_id"] != want.TaskID.String() || m["task_type"] != "echo" ||
			m["status"] != "executing" || m["event_type"] != want.EventType || m["origin_tenant_id"] != want.TenantID ||
			m["created_at"] == nil || body["task_id"] != want.TaskID.String() || body["event_type"] != want.EventType {
			t.Errorf("message %s does not carry event %d", msg.Payload, want.ID)
		}
	}
}

// TestRedisDown points the bus at a port nothing listens on: Publish fails
// fast with an error, Subscribe keeps retrying without blocking anyone,
// and an Announcer over it never blocks its caller and stops promptly.
func TestRedisDown(t *testing.T) {
	t.Parallel()
	bus := newRedisBus(t, testredis.ClosedURL(t))
	start := time.Now()
	err := bus.Publish(t.Context(), sample(1, 3))
	if err == nil {
		t.Fatal("Publish to a Redis that is down returned nil")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Publish took %s to fail", took)
	}
	ctx, cancel := context.WithCancel(t.Context())
	ch := bus.Subscribe(ctx)

	ann := event.NewAnnouncer(bus, testdb.Logger(t))
	if err := ann.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	batches := make([][]event.Event, 20000)
	for i := range batches {
		batches[i] = sample(int64(i), 1)
	}
	start = time.Now()
	for _, b := range batches {
		ann.Announce(b)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("20000 announcements took %s; Announce must never wait for the bus", took)
	}
	deadline := time.Now().Add(waitLimit)
	for ann.Dropped() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if ann.Dropped() == 0 {
		t.Error("no announcement was counted as dropped")
	}
	start = time.Now()
	ann.Stop()
	ann.Stop() // idempotent
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Stop took %s", took)
	}
	ann.Announce(sample(1, 1)) // after Stop: dropped, no panic

	cancel()
	select {
	case _, ok := <-ch:
		for ok {
			_, ok = <-ch
		}
	case <-time.After(waitLimit):
		t.Fatal("the subscription of a down Redis did not end with its context")
	}
}

// TestAnnouncerPublishesInOrder checks the announcer delivers every batch,
// coalesced, in the order the store committed them.
func TestAnnouncerPublishesInOrder(t *testing.T) {
	t.Parallel()
	bus := event.NewInProc()
	ch := bus.Subscribe(t.Context())
	ann := event.NewAnnouncer(bus, testdb.Logger(t))
	var want []event.Event
	for i := range 50 {
		b := sample(int64(1+3*i), 3)
		want = append(want, b...)
		ann.Announce(b) // before Start: queued
	}
	if err := ann.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer ann.Stop()
	got := receive(t, ch, len(want))
	ids := func(evs []event.Event) []int64 {
		out := make([]int64, len(evs))
		for i, e := range evs {
			out[i] = e.ID
		}
		return out
	}
	if !slices.Equal(ids(got), ids(want)) {
		t.Errorf("ids %v, want %v", ids(got), ids(want))
	}
	if err := ann.Start(t.Context()); err == nil {
		t.Error("a second Start succeeded")
	}
}

// TestRedisReconnect cuts the subscriber's connection to Redis and brings
// it back: the subscription reconnects by itself and announces the
// reconnect with an empty batch (readers catch up from the database), then
// delivers again.
func TestRedisReconnect(t *testing.T) {
	t.Parallel()
	url := testredis.URL(t)
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	prefix := testredis.Prefix(t)
	px := tcpproxy.New(t, opts.Addr)
	sub := newRedisBus(t, "redis://"+px.Addr()+"/0", prefix)
	pub := newRedisBus(t, url, prefix)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch := sub.Subscribe(ctx)
	waitConnected(t, ch)
	first := publishOne(t, pub, 1)
	sameEvents(t, receive(t, ch, 1), first)

	px.Cut()
	publishOne(t, pub, 2)              // nobody hears this one: Redis keeps nothing
	time.Sleep(400 * time.Millisecond) // reconnect attempts fail meanwhile
	px.Restore()
	begin := time.Now()
	waitConnected(t, ch) // the reconnect announcement
	t.Logf("reconnected %s after Redis came back", time.Since(begin))
	again := publishOne(t, pub, 3)
	sameEvents(t, receive(t, ch, 1), again)
}

// publishOne publishes one event with the given id and returns it.
func publishOne(t *testing.T, bus *event.RedisBus, id int64) []event.Event {
	t.Helper()
	evs := sample(id, 1)
	if err := bus.Publish(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	return evs
}
