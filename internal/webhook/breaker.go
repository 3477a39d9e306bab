package webhook

import (
	"sync"
	"time"
)

// verdict is what one attempt says about its destination.
type verdict int

const (
	// neutral says nothing: the request was not sent (a spent budget, a
	// destination refused by the policy, a URL that cannot be requested).
	neutral verdict = iota
	// up: the destination answered (any status but 5xx and 429).
	up
	// down: a connection error, a timeout, a 5xx or a 429.
	down
)

// verdictOf judges an attempt's result.
func verdictOf(r result) verdict {
	switch {
	case r.permanent:
		return neutral
	case r.code == 0, r.code >= 500, r.code == 429:
		return down
	default:
		return up
	}
}

// breakers holds one deliverer's circuit breakers, one per destination
// that failed lately (state is per process). A circuit opens after
// threshold consecutive failed attempts: its destination's deliveries are
// not claimed until the cool-down ends (the deliverer also postpones them
// in the database, without counting attempts). Then it is half-open: one
// delivery is claimed as a probe; an answer closes the circuit, a failure
// opens it again for twice the last cool-down, at most maxCooldown.
type breakers struct {
	threshold   int
	cooldown    time.Duration
	maxCooldown time.Duration

	mu sync.Mutex
	m  map[string]*circuit
}

// circuit is one destination's breaker; a destination without one is
// closed with no failures.
type circuit struct {
	// failures counts consecutive failed attempts while closed.
	failures int
	// openUntil is when the cool-down ends (zero while closed); after it
	// the circuit is half-open.
	openUntil time.Time
	// cooldown is the last cool-down, doubled at each re-opening.
	cooldown time.Duration
	// probing is true while a half-open circuit's probe is in flight.
	probing bool
	// changed is when the circuit last changed, for pruning.
	changed time.Time
}

func newBreakers(threshold int, cooldown, maxCooldown time.Duration) *breakers {
	return &breakers{threshold: threshold, cooldown: cooldown, maxCooldown: maxCooldown, m: map[string]*circuit{}}
}

// filter returns the destinations the next claim must skip (open, or
// half-open with a probe in flight) and those it may claim one delivery
// of, as a probe (half-open). Circuits left alone for longer than the
// longest cool-down (a destination with nothing more to send) are
// forgotten.
func (b *breakers) filter(now time.Time) (skip, probe []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for dest, c := range b.m {
		switch {
		case c.openUntil.IsZero():
			if now.Sub(c.changed) > b.maxCooldown {
				delete(b.m, dest)
			}
		case now.Before(c.openUntil), c.probing:
			skip = append(skip, dest)
		case now.Sub(c.openUntil) > b.maxCooldown:
			delete(b.m, dest)
		default:
			probe = append(probe, dest)
		}
	}
	return skip, probe
}

// claimed notes a claimed delivery of dest: on a half-open circuit it is
// the probe.
func (b *breakers) claimed(dest string, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if c := b.m[dest]; c != nil && !c.openUntil.IsZero() && !now.Before(c.openUntil) {
		c.probing, c.changed = true, now
	}
}

// record notes an attempt's verdict. It returns the end of the cool-down
// and true when the attempt opened the circuit (or opened it again).
func (b *breakers) record(dest string, v verdict, now time.Time) (time.Time, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.m[dest]
	switch v {
	case up:
		delete(b.m, dest)
		return time.Time{}, false
	case neutral:
		if c != nil {
			c.probing = false // a probe that was not sent: probe again
		}
		return time.Time{}, false
	}
	if c == nil {
		c = &circuit{}
		b.m[dest] = c
	}
	c.changed = now
	switch {
	case c.openUntil.IsZero():
		c.failures++
		if c.failures < b.threshold {
			return time.Time{}, false
		}
		c.cooldown = b.cooldown
	case now.Before(c.openUntil):
		return time.Time{}, false // a request sent before it opened
	default: // half-open: the probe (or a straggler) failed
		c.cooldown = min(2*c.cooldown, b.maxCooldown)
	}
	c.probing = false
	c.openUntil = now.Add(c.cooldown)
	return c.openUntil, true
}

// isOpen reports whether dest's circuit is open or half-open.
func (b *breakers) isOpen(dest string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.m[dest]
	return c != nil && !c.openUntil.IsZero()
}
