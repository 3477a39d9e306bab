package replicatefake

import (
	"fmt"
	"net/http"
	"time"

	"github.com/computeserver/compute/internal/executor/internal/fakekit"
)

// newSender makes p's webhook sender (§3.1 Webhooks): events filtered by
// webhook_events_filter, logs and output throttled to one per
// WebhookThrottle with coalescing (§3.3), completed retried, every attempt
// signed per Standard Webhooks (webhook-id, webhook-timestamp,
// webhook-signature "v1,<base64 HMAC-SHA256>").
func (f *Fake) newSender(p *prediction) *fakekit.Sender {
	return &fakekit.Sender{
		URL: p.webhook, Filter: p.filter,
		Throttled: func(e string) bool { return e == EventLogs || e == EventOutput },
		Throttle:  f.cfg.WebhookThrottle,
		Retries:   f.cfg.WebhookRetries, Backoff: f.cfg.WebhookBackoff,
		Duplicate:     f.cfg.DuplicateCompleted,
		MessagePrefix: fmt.Sprintf("msg_%s_", p.create.ID),
		Header: func(id string, at time.Time, body []byte) http.Header {
			h := http.Header{}
			f.signer.SetHeaders(h, id, at, body)
			return h
		},
		Client: f.cfg.Client,
		JobID:  p.create.ID,
		Record: f.deliveries.Add,
	}
}

// emitLocked queues webhook event name for p with the object as it is now
// (§3.1 Webhooks: the body is the full prediction object).
func (f *Fake) emitLocked(p *prediction, name string) {
	if p.hook != nil {
		p.hook.EmitObject(name, f.viewLocked(p))
	}
}
