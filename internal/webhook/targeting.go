package webhook

import (
	"net"
	"net/url"
	"slices"
	"strings"

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
	return []store.DeliveryTarget{{URL: u, Destination: Destination(u)}}
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

// Destination is what per-destination concurrency limits and circuit
// breakers group deliveries by: the URL's scheme, host and port, lower
// case, with the scheme's default port made explicit
// ("https://hooks.example.com:443"). A URL that does not parse is its own
// destination.
func Destination(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return rawURL
	}
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		switch scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	host := strings.ToLower(u.Hostname())
	if port == "" {
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		return scheme + "://" + host
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}
