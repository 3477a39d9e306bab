package replicatefake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/computeserver/compute/internal/executor/internal/fakekit"
)

// emitLocked queues webhook event name for p with the object as it is now,
// unless p has no webhook or its webhook_events_filter leaves the event
// out (§3.1 Webhooks).
func (f *Fake) emitLocked(p *prediction, name string) {
	if p.webhook == "" || (p.filter != nil && !slices.Contains(p.filter, name)) {
		return
	}
	body, _ := json.Marshal(f.viewLocked(p)) // maps of plain values always encode
	p.outbox = append(p.outbox, event{name: name, body: body})
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// throttled reports whether event name is limited to one per
// WebhookThrottle (§3.1: logs ≤ 1 per 500 ms; output too, as Cog's
// throttle covers every non-terminal event, §3.2).
func throttled(name string) bool { return name == EventLogs || name == EventOutput }

// deliver sends p's webhooks in order until the terminal one is out: start
// and completed at once, logs and output at most one per WebhookThrottle,
// a newer one (or completed) superseding one still waiting (§3.3
// "coalescing").
func (f *Fake) deliver(p *prediction) {
	defer f.wg.Done()
	var lastThrottled time.Time
	for {
		f.mu.Lock()
		events := p.outbox
		p.outbox = nil
		done := terminal(p.status)
		f.mu.Unlock()
		if len(events) == 0 {
			if done {
				return
			}
			select {
			case <-p.wake:
				continue
			case <-f.ctx.Done():
				return
			}
		}
		for i, e := range events {
			if throttled(e.name) && !f.throttle(p, e.name, events[i+1:], &lastThrottled) {
				continue
			}
			f.mu.Lock()
			p.hookSeq++
			id := fmt.Sprintf("msg_%s_%d", p.create.ID, p.hookSeq)
			f.mu.Unlock()
			f.send(p, e, id)
			if e.name == EventCompleted && f.cfg.DuplicateCompleted {
				f.send(p, e, id)
			}
		}
	}
}

// throttle waits until an event of kind name may go out, and reports
// false when a newer one of the same kind, or the completed one, arrived
// meanwhile (in rest or in p's outbox) and carries the newer object.
func (f *Fake) throttle(p *prediction, name string, rest []event, last *time.Time) bool {
	newer := func(e event) bool { return e.name == name || e.name == EventCompleted }
	for {
		wait := time.Until(last.Add(f.cfg.WebhookThrottle))
		if wait <= 0 {
			*last = time.Now()
			return true
		}
		f.mu.Lock()
		superseded := slices.ContainsFunc(rest, newer) || slices.ContainsFunc(p.outbox, newer)
		f.mu.Unlock()
		if superseded {
			return false
		}
		// A new event wakes the wait early, to check whether it supersedes.
		if fakekit.Phase(wait, p.wake, f.ctx.Done(), nil) == fakekit.Interrupted {
			return false
		}
	}
}

// send posts one event signed per Standard Webhooks (§3.1: webhook-id,
// webhook-timestamp, webhook-signature "v1,<base64 HMAC-SHA256>"),
// retrying a completed event on failure.
func (f *Fake) send(p *prediction, e event, id string) {
	tries := 1
	if e.name == EventCompleted {
		tries += f.cfg.WebhookRetries
	}
	var obj struct{ Status string }
	_ = json.Unmarshal(e.body, &obj) // the fake's own JSON
	backoff := f.cfg.WebhookBackoff
	for attempt := 1; attempt <= tries; attempt++ {
		at := time.Now()
		h := http.Header{}
		f.signer.SetHeaders(h, id, at, e.body)
		code, err := fakekit.Post(f.ctx, f.cfg.Client, p.webhook, h, e.body)
		d := Delivery{
			PredictionID: p.create.ID, Event: e.name, Status: obj.Status, Attempt: attempt, Code: code,
			Header: h, Body: e.body, At: at,
		}
		if err != nil {
			d.Err = err.Error()
		}
		f.mu.Lock()
		f.deliveries = append(f.deliveries, d)
		f.mu.Unlock()
		f.changes.Notify()
		if err == nil && code/100 == 2 {
			return
		}
		if attempt == tries || fakekit.Phase(backoff, nil, f.ctx.Done(), nil) == fakekit.Interrupted {
			return
		}
		backoff *= 2
	}
}
