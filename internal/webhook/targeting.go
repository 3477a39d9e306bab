package webhook

import (
	"slices"

	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/store"
)

// Targeting decides which webhook deliveries an event gets: one to the
// task's webhook_url, or to DefaultURL when the task names none, when the
// task's webhook_events filter wants the event. The store calls Targets in
// the event's transaction (sqlstore.WithWebhookTargets).
type Targeting struct {
	// DefaultURL receives the events of tasks without a webhook_url
	// (COMPUTE_WEBHOOK_URL); empty sends them nowhere.
	DefaultURL string
}

// Targets returns the deliveries to write for e: none or one.
func (t Targeting) Targets(e event.Event) []store.DeliveryTarget {
	u := e.WebhookURL
	if u == "" {
		u = t.DefaultURL
	}
	if u == "" || !Wants(e.WebhookEvents, e.Kind, string(e.Status)) {
		return nil
	}
	return []store.DeliveryTarget{{URL: u}}
}

// Wants reports whether a task's webhook_events filter wants an event of
// kind (event.KindStatus or event.KindProgress) with status: the filter
// names statuses and/or "progress"; an empty filter means every status
// change and no progress.
func Wants(filter []string, kind, status string) bool {
	if kind == event.KindProgress {
		return slices.Contains(filter, "progress")
	}
	return len(filter) == 0 || slices.Contains(filter, status)
}
