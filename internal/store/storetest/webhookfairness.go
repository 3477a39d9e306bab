package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// hookTo creates an echo task whose creation event goes to url, and
// returns its one delivery.
func (e *env) hookTo(url string) store.Delivery {
	e.t.Helper()
	tk := e.createEcho(func(t *task.Task) { t.WebhookURL, t.WebhookEvents = url, []string{"pending"} }).Task
	ds := e.deliveries(tk.ID)
	if len(ds) != 1 || ds[0].Destination == "" {
		e.t.Fatalf("task %s deliveries = %+v, want one with a destination", tk.ID, ds)
	}
	return ds[0]
}

// claimWith claims with a one-minute lease.
func (e *env) claimWith(c store.DeliveryClaim) []store.Delivery {
	e.t.Helper()
	c.Lease = time.Minute
	ds, err := e.s.ClaimDeliveries(e.ctx, c)
	if err != nil {
		e.t.Fatalf("ClaimDeliveries(%+v): %v", c, err)
	}
	return ds
}

// sameIDs reports whether two sets of deliveries hold the same ids.
func sameIDs(got, want []store.Delivery) bool {
	a, b := deliveryIDs(got), deliveryIDs(want)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func testWebhookFairness(t *testing.T, newEnv func(t *testing.T) *env) {
	t.Run("claims take turns across destinations within the per-destination limit", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		var a []store.Delivery
		for range 5 { // older than the others: oldest-first alone would take them all
			a = append(a, e.hookTo("https://a.example/hook"))
		}
		b := e.hookTo("https://b.example/hook")
		c := e.hookTo("https://c.example/other")
		if a[0].Destination == b.Destination || b.Destination != e.hookTo("https://B.example:443/x").Destination {
			t.Fatalf("destinations: a %q, b %q; want different hosts apart and one host's URLs together", a[0].Destination, b.Destination)
		}
		first := e.claimWith(store.DeliveryClaim{Limit: 4, PerDestination: 2})
		if want := []store.Delivery{a[0], b, c, a[1]}; !sameIDs(first, want) {
			t.Errorf("first claim = %v, want %v: each destination's oldest, then a second turn", deliveryIDs(first), deliveryIDs(want))
		}
		// a has 2 in flight; b's second delivery (to B.example:443) is
		// the only other one due.
		second := e.claimWith(store.DeliveryClaim{Limit: 10, PerDestination: 2})
		if len(second) != 1 || second[0].Destination != b.Destination {
			t.Errorf("second claim = %+v, want only b's second delivery: a is at its limit", second)
		}
		e.record(first[0], 200, store.DeliveryOutcome{Status: store.DeliveryDelivered})
		for _, d := range first[1:] {
			if d.Destination == a[0].Destination {
				e.record(d, 503, store.DeliveryOutcome{Status: store.DeliveryPending, NextAttemptAt: task.Now().Add(time.Hour)})
			}
		}
		// Recording frees the slots of a: two more of its deliveries.
		third := e.claimWith(store.DeliveryClaim{Limit: 10, PerDestination: 2})
		if len(third) != 2 || third[0].Destination != a[0].Destination || third[1].Destination != a[0].Destination {
			t.Errorf("third claim = %+v, want two of a's", third)
		}
		// Without a limit the turns still alternate, and all is taken.
		e2 := newEnv(t)
		x := []store.Delivery{e2.hookTo("https://x.example/"), e2.hookTo("https://x.example/"), e2.hookTo("https://x.example/")}
		y := e2.hookTo("https://y.example/")
		if got := e2.claimWith(store.DeliveryClaim{Limit: 2}); !sameIDs(got, []store.Delivery{x[0], y}) {
			t.Errorf("claim of 2 without a limit = %v, want x's oldest and y's", deliveryIDs(got))
		}
		if got := e2.claimWith(store.DeliveryClaim{Limit: 10}); !sameIDs(got, x[1:]) {
			t.Errorf("claim without a limit = %v, want x's other two", deliveryIDs(got))
		}
	})

	t.Run("skipped destinations are not claimed, probed ones one at a time", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		a := []store.Delivery{e.hookTo("https://a.example/"), e.hookTo("https://a.example/")}
		b := []store.Delivery{e.hookTo("https://b.example/"), e.hookTo("https://b.example/")}
		c := e.hookTo("https://c.example/")
		claim := store.DeliveryClaim{Limit: 10, PerDestination: 5, Skip: []string{a[0].Destination}, Probe: []string{b[0].Destination}}
		if got := e.claimWith(claim); !sameIDs(got, []store.Delivery{b[0], c}) {
			t.Errorf("claim = %v, want b's oldest as the probe and c's", deliveryIDs(got))
		}
		if got := e.claimWith(claim); len(got) != 0 {
			t.Errorf("claim with b's probe in flight = %v, want none", deliveryIDs(got))
		}
		if got := e.claimWith(store.DeliveryClaim{Limit: 10, PerDestination: 5}); !sameIDs(got, []store.Delivery{a[0], a[1], b[1]}) {
			t.Errorf("claim without skips = %v, want the rest", deliveryIDs(got))
		}
	})

	t.Run("postponing moves waiting deliveries without an attempt", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		a := []store.Delivery{e.hookTo("https://a.example/"), e.hookTo("https://a.example/"), e.hookTo("https://a.example/")}
		b := e.hookTo("https://b.example/")
		inFlight := e.claimWith(store.DeliveryClaim{Limit: 1, PerDestination: 1, Skip: []string{b.Destination}})
		if len(inFlight) != 1 || inFlight[0].ID != a[0].ID {
			t.Fatalf("claim = %+v, want a's oldest", inFlight)
		}
		created := task.Now()
		until := created.Add(time.Hour)
		postponed, failed, err := e.s.PostponeDeliveries(e.ctx, store.Postponement{
			Destination: a[0].Destination, Until: until, FailWindowsBefore: created.Add(-time.Hour), Reason: "circuit open",
		})
		if err != nil || postponed != 2 || failed != 0 {
			t.Fatalf("PostponeDeliveries = %d postponed, %d failed, %v; want the 2 waiting ones postponed", postponed, failed, err)
		}
		for _, d := range a[1:] {
			got := e.deliveries(d.TaskID)[0]
			if got.Status != store.DeliveryPending || !got.NextAttemptAt.Equal(until) || got.Attempts != 0 || len(got.AttemptLog) != 0 {
				t.Errorf("postponed delivery = %+v, want pending until %s with no attempt", got, until)
			}
		}
		if got := e.deliveries(a[0].TaskID)[0]; got.Attempts != 1 || !got.NextAttemptAt.Equal(inFlight[0].NextAttemptAt) {
			t.Errorf("the delivery in flight changed: %+v", got)
		}
		if got := e.deliveries(b.TaskID)[0]; !got.NextAttemptAt.Equal(b.NextAttemptAt) {
			t.Errorf("another destination's delivery moved: %+v", got)
		}
		if got := e.claimWith(store.DeliveryClaim{Limit: 10}); len(got) != 1 || got[0].ID != b.ID {
			t.Errorf("claim after postponing = %v, want only b's", deliveryIDs(got))
		}
		// Windows that started before the cut fail instead.
		postponed, failed, err = e.s.PostponeDeliveries(e.ctx, store.Postponement{
			Destination: a[0].Destination, Until: until.Add(time.Hour), FailWindowsBefore: task.Now().Add(time.Second), Reason: "circuit open",
		})
		if err != nil || postponed != 0 || failed != 2 {
			t.Fatalf("PostponeDeliveries past the windows = %d postponed, %d failed, %v; want 2 failed", postponed, failed, err)
		}
		for _, d := range a[1:] {
			if got := e.deliveries(d.TaskID)[0]; got.Status != store.DeliveryFailed || got.LastError != "circuit open" || got.Attempts != 0 {
				t.Errorf("expired delivery = %+v, want failed with the reason and no attempt", got)
			}
		}
		if got := e.deliveries(a[0].TaskID)[0]; got.Status != store.DeliveryPending {
			t.Errorf("the delivery in flight failed: %+v", got)
		}
	})
}
