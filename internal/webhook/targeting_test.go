package webhook_test

import (
	"reflect"
	"testing"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/webhook"
)

// TestTargets: which deliveries an event gets, from the task's URL or the
// default, and its webhook_events filter.
func TestTargets(t *testing.T) {
	t.Parallel()
	own, def := "https://own.example/hook?t=1", "http://default.example:8080/x"
	for _, tc := range []struct {
		name       string
		defaultURL string
		url        string
		filter     []string
		kind       string
		status     task.Status
		want       []store.DeliveryTarget
	}{
		{name: "no target", kind: event.KindStatus, status: task.StatusPending},
		{name: "own url, every status", url: own, kind: event.KindStatus, status: task.StatusCompleted,
			want: []store.DeliveryTarget{{URL: own, Destination: "https://own.example:443"}}},
		{name: "own url wins over the default", defaultURL: def, url: own, kind: event.KindStatus, status: task.StatusFailed,
			want: []store.DeliveryTarget{{URL: own, Destination: "https://own.example:443"}}},
		{name: "default url", defaultURL: def, kind: event.KindStatus, status: task.StatusPending,
			want: []store.DeliveryTarget{{URL: def, Destination: "http://default.example:8080"}}},
		{name: "no progress without asking", url: own, kind: event.KindProgress, status: task.StatusExecuting},
		{name: "progress asked", url: own, filter: []string{"progress"}, kind: event.KindProgress, status: task.StatusExecuting,
			want: []store.DeliveryTarget{{URL: own, Destination: "https://own.example:443"}}},
		{name: "filtered out", url: own, filter: []string{"completed", "progress"}, kind: event.KindStatus, status: task.StatusExecuting},
		{name: "filter applies to the default", defaultURL: def, filter: []string{"failed"}, kind: event.KindStatus, status: task.StatusCompleted},
		{name: "filtered in", url: own, filter: []string{"completed"}, kind: event.KindStatus, status: task.StatusCompleted,
			want: []store.DeliveryTarget{{URL: own, Destination: "https://own.example:443"}}},
	} {
		e := event.Event{TaskID: uuid.New(), Kind: tc.kind, Status: tc.status, WebhookURL: tc.url, WebhookEvents: tc.filter}
		if got := (webhook.Targeting{DefaultURL: tc.defaultURL}).Targets(e); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: targets = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// TestDestination: scheme, host and port, normalised.
func TestDestination(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://Hooks.Example.com/a/b?token=x": "https://hooks.example.com:443",
		"https://hooks.example.com:443/other":   "https://hooks.example.com:443",
		"HTTP://hooks.example.com/":             "http://hooks.example.com:80",
		"http://hooks.example.com:8080":         "http://hooks.example.com:8080",
		"http://[::1]:9000/hook":                "http://[::1]:9000",
		"https://[2001:DB8::1]/hook":            "https://[2001:db8::1]:443",
		"not a url":                             "not a url",
	} {
		if got := webhook.Destination(in); got != want {
			t.Errorf("Destination(%q) = %q, want %q", in, got, want)
		}
	}
}
