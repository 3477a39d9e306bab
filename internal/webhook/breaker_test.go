package webhook

import (
	"slices"
	"testing"
	"time"
)

// TestBreaker walks one destination's circuit through its states: closed
// until threshold consecutive failures, open for the cool-down, half-open
// with one probe, opened again for twice as long (capped) when the probe
// fails, closed by an answer.
func TestBreaker(t *testing.T) {
	t.Parallel()
	const dest = "https://hooks.example:443"
	b := newBreakers(3, time.Second, 3*time.Second)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	state := func(now time.Time) string {
		skip, probe := b.filter(now)
		switch {
		case slices.Contains(skip, dest):
			return "skip"
		case slices.Contains(probe, dest):
			return "probe"
		}
		return "claim"
	}
	fail := func(now time.Time) (time.Time, bool) { return b.record(dest, down, now) }

	// An answer in between resets the count; so does a 4xx (up).
	fail(at(0))
	fail(at(0))
	b.record(dest, up, at(0))
	fail(at(0))
	fail(at(0))
	if _, opened := fail(at(0)); !opened {
		t.Fatal("the third consecutive failure did not open the circuit")
	}
	if got := state(at(500 * time.Millisecond)); got != "skip" {
		t.Errorf("during the cool-down the destination is %s, want skip", got)
	}
	// A request sent before it opened fails late: nothing changes.
	if _, opened := fail(at(600 * time.Millisecond)); opened {
		t.Error("a straggler's failure while open reopened the circuit")
	}
	if got := state(at(time.Second)); got != "probe" {
		t.Errorf("after the cool-down the destination is %s, want probe", got)
	}
	b.claimed(dest, at(time.Second))
	if got := state(at(time.Second)); got != "skip" {
		t.Errorf("with the probe in flight the destination is %s, want skip", got)
	}
	// The failed probe opens it for twice as long, then the cap holds.
	now := at(time.Second)
	for i, want := range []time.Duration{2 * time.Second, 3 * time.Second, 3 * time.Second} {
		until, opened := fail(now)
		if !opened || until.Sub(now) != want {
			t.Errorf("round %d: failed probe opened=%v for %s, want %s", i, opened, until.Sub(now), want)
		}
		if got := state(until.Add(-time.Millisecond)); got != "skip" {
			t.Errorf("round %d: before the cool-down ends the destination is %s, want skip", i, got)
		}
		now = until
		if got := state(now); got != "probe" {
			t.Fatalf("round %d: after the cool-down the destination is %s, want probe", i, got)
		}
		b.claimed(dest, now)
	}
	// A probe that was not sent (neutral) leaves it half-open.
	b.record(dest, neutral, now)
	if got := state(now); got != "probe" {
		t.Errorf("after an unsent probe the destination is %s, want probe", got)
	}
	// An answer closes it; the next opening starts from the first cool-down.
	b.claimed(dest, now)
	b.record(dest, up, now)
	if got := state(now); got != "claim" {
		t.Errorf("after a successful probe the destination is %s, want claim", got)
	}
	fail(now)
	fail(now)
	if until, opened := fail(now); !opened || until.Sub(now) != time.Second {
		t.Errorf("reopening after a close: opened=%v for %s, want the first cool-down 1s", opened, until.Sub(now))
	}
	// A half-open circuit with nothing to probe is forgotten after the
	// longest cool-down.
	if got := state(now.Add(time.Second + 3*time.Second + time.Millisecond)); got != "claim" {
		t.Errorf("an abandoned half-open circuit is %s, want forgotten", got)
	}
}

// TestVerdict: what counts as a failure for the breaker.
func TestVerdict(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		r    result
		want verdict
	}{
		{"2xx", result{code: 200}, up},
		{"4xx", result{code: 404}, up},
		{"410", result{code: 410}, up},
		{"redirect", result{code: 307}, up},
		{"429", result{code: 429}, down},
		{"5xx", result{code: 503}, down},
		{"timeout or connection error", result{err: "no answer within 10s"}, down},
		{"refused by the policy", result{err: "forbidden destination", permanent: true}, neutral},
	} {
		if got := verdictOf(tc.r); got != tc.want {
			t.Errorf("%s: verdict %d, want %d", tc.name, got, tc.want)
		}
	}
}
