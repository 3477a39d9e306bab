package webhook_test

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/store"
)

// hangingReceiver is a real HTTP server on loopback whose handler holds
// every request until the test releases it (or the sender gives up), and
// counts the requests it holds and those that ended.
type hangingReceiver struct {
	*receiver
	release chan struct{}

	mu              sync.Mutex
	held, maxHeld   int
	ended, received int
}

func newHangingReceiver(t *testing.T) *hangingReceiver {
	h := &hangingReceiver{release: make(chan struct{})}
	h.receiver = newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.held++
		h.received++
		h.maxHeld = max(h.maxHeld, h.held)
		h.mu.Unlock()
		select {
		case <-h.release:
			w.WriteHeader(http.StatusOK)
		case <-r.Context().Done():
		}
		h.mu.Lock()
		h.held--
		h.ended++
		h.mu.Unlock()
	})
	return h
}

// counts returns how many requests it holds, the most it held at once,
// how many ended and how many it received.
func (h *hangingReceiver) counts() (held, maxHeld, ended, received int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.held, h.maxHeld, h.ended, h.received
}

// TestHungReceiverDoesNotDelayOthers: 24 deliveries to a receiver that
// never answers are being sent, by two deliverers sharing the database,
// when an event for a healthy receiver comes. The healthy receiver gets it
// while the hung receiver still holds its requests (none of them has timed
// out), and the hung receiver never holds more than the per-destination
// limit, counted across both deliverers. Before per-destination limits the
// hung deliveries took all 8 slots and the healthy event waited for their
// timeouts.
func TestHungReceiverDoesNotDelayOthers(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, s store.Store) {
		hung := newHangingReceiver(t)
		type seen struct{ held, ended int }
		atHealthy := make(chan seen, 10)
		healthy := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
			held, _, ended, _ := hung.counts()
			atHealthy <- seen{held, ended}
			w.WriteHeader(http.StatusNoContent)
		})
		for range 24 {
			hook(t, s, hung.srv.URL+"/hook")
		}
		cfg := testConfig(t)
		// Far longer than a healthy delivery takes: before the fix the
		// healthy event waited for these timeouts.
		cfg.Timeout = 8 * time.Second
		cfg.MaxAttempts = 1
		cfg.PerDestination = 2
		start(t, s, cfg)
		start(t, s, cfg)
		t.Cleanup(func() { close(hung.release) }) // runs before the deliverers stop
		hung.wait(2)
		id := hook(t, s, healthy.srv.URL+"/hook")
		if d := waitDelivery(t, s, id); d.Status != store.DeliveryDelivered {
			t.Fatalf("healthy delivery = %+v", d)
		}
		got := <-atHealthy
		if got.ended != 0 || got.held == 0 {
			t.Errorf("when the healthy receiver got its event the hung receiver held %d requests and %d had ended; "+
				"want it delivered while the hung requests are still held, before any timed out", got.held, got.ended)
		}
		if _, maxHeld, _, _ := hung.counts(); maxHeld > cfg.PerDestination {
			t.Errorf("the hung receiver held %d requests at once, want at most the per-destination limit %d", maxHeld, cfg.PerDestination)
		}
	})
}

// TestFailingDestinationOpensTheCircuit: a destination that answers 503
// to everything opens its circuit after BreakerThreshold failures; while
// it fails, the requests it receives stay bounded by the threshold, the
// requests in flight when it opened and one probe per cool-down, although
// its ten deliveries would retry every few tens of milliseconds. The
// postponements are not attempts: every recorded attempt is a request the
// receiver got. Once it answers again a probe closes the circuit and every
// delivery is delivered.
func TestFailingDestinationOpensTheCircuit(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, s store.Store) {
		var failing atomic.Bool
		failing.Store(true)
		rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
			if failing.Load() {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
			w.WriteHeader(http.StatusOK)
		})
		var ids []uuid.UUID
		for range 10 {
			ids = append(ids, hook(t, s, rc.srv.URL+"/hook"))
		}
		cfg := testConfig(t)
		cfg.MaxAttempts = 100
		cfg.PerDestination = 2
		cfg.BreakerThreshold = 3
		cfg.BreakerCooldown = 500 * time.Millisecond
		cfg.BreakerMaxCooldown = 500 * time.Millisecond
		started := time.Now()
		start(t, s, cfg)
		rc.wait(cfg.BreakerThreshold)
		time.Sleep(2 * time.Second)
		failing.Store(false)
		// Probes: at most one per cool-down since the start, plus one.
		probes := int(time.Since(started)/cfg.BreakerCooldown) + 1
		bound := cfg.BreakerThreshold + cfg.PerDestination - 1 + probes
		whileFailing := len(rc.requests())
		if whileFailing > bound {
			t.Errorf("the failing destination got %d requests in %s; want at most %d (threshold %d, %d in flight, %d probes)",
				whileFailing, time.Since(started).Round(time.Millisecond), bound, cfg.BreakerThreshold, cfg.PerDestination-1, probes)
		}
		attempts := 0
		for _, id := range ids {
			d := waitDelivery(t, s, id)
			if d.Status != store.DeliveryDelivered {
				t.Errorf("after the destination recovered, delivery = %+v", d)
			}
			if d.Attempts != len(d.AttemptLog) {
				t.Errorf("delivery %d counts %d attempts but recorded %d", d.ID, d.Attempts, len(d.AttemptLog))
			}
			attempts += len(d.AttemptLog)
		}
		if got := len(rc.requests()); attempts != got {
			t.Errorf("%d attempts recorded for %d requests received; postponing must not count attempts", attempts, got)
		}
	})
}
