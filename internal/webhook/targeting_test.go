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
			want: []store.DeliveryTarget{{URL: own}}},
		{name: "own url wins over the default", defaultURL: def, url: own, kind: event.KindStatus, status: task.StatusFailed,
			want: []store.DeliveryTarget{{URL: own}}},
		{name: "default url", defaultURL: def, kind: event.KindStatus, status: task.StatusPending,
			want: []store.DeliveryTarget{{URL: def}}},
		{name: "no progress without asking", url: own, kind: event.KindProgress, status: task.StatusExecuting},
		{name: "progress asked", url: own, filter: []string{"progress"}, kind: event.KindProgress, status: task.StatusExecuting,
			want: []store.DeliveryTarget{{URL: own}}},
		{name: "filtered out", url: own, filter: []string{"completed", "progress"}, kind: event.KindStatus, status: task.StatusExecuting},
		{name: "filter applies to the default", defaultURL: def, filter: []string{"failed"}, kind: event.KindStatus, status: task.StatusCompleted},
		{name: "filtered in", url: own, filter: []string{"completed"}, kind: event.KindStatus, status: task.StatusCompleted,
			want: []store.DeliveryTarget{{URL: own}}},
	} {
		e := event.Event{TaskID: uuid.New(), Kind: tc.kind, Status: tc.status, WebhookURL: tc.url, WebhookEvents: tc.filter}
		if got := (webhook.Targeting{DefaultURL: tc.defaultURL}).Targets(e); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: targets = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
