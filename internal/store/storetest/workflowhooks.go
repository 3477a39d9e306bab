package storetest

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/store"
)

// testWorkflowWebhooks: a workflow's workflow_status_update events get
// deliveries, under the workflow's id, to the workflow's own webhook_url and
// to the endpoints whose filter wants them; the deliveries are claimed with
// the event's body and the endpoint's secret, recorded, and listed in the
// workflow's tenant's ledger.
func testWorkflowWebhooks(t *testing.T, newEnv func(t *testing.T) *env) {
	e := newEnv(t)
	wfEP := e.newEndpoint("acme", "https://a.example/wf", store.EndpointFilter{EventTypes: []string{store.WorkflowEventType}})
	typeEP := e.newEndpoint("acme", "https://a.example/type", store.EndpointFilter{TaskTypes: []string{"workflow"}})
	e.newEndpoint("acme", "https://a.example/echo", store.EndpointFilter{TaskTypes: []string{"echo"}})
	e.newEndpoint("other", "https://b.example/all", store.EndpointFilter{})
	w, err := e.s.CreateWorkflow(e.ctx, &store.Workflow{ID: uuid.New(), TenantID: "acme",
		WebhookURL: "https://a.example/own", Steps: []store.WorkflowStep{wstep("a", echoStep)}}, false)
	if err != nil {
		t.Fatalf("CreateWorkflow: %v", err)
	}
	if w.WebhookURL != "https://a.example/own" {
		t.Errorf("the workflow's webhook_url reads back as %q", w.WebhookURL)
	}
	ds := e.claimDeliveries(10)
	var urls []string
	for _, d := range ds {
		urls = append(urls, d.URL)
		if d.TaskID != w.ID {
			t.Errorf("delivery %d to %s has task_id %s, want the workflow's %s", d.ID, d.URL, d.TaskID, w.ID)
		}
		var body struct {
			EventType  string    `json:"event_type"`
			WorkflowID uuid.UUID `json:"workflow_id"`
			Status     string    `json:"status"`
		}
		if err := json.Unmarshal(d.Body, &body); err != nil || body.EventType != store.WorkflowEventType ||
			body.WorkflowID != w.ID || body.Status != store.WorkflowPending {
			t.Errorf("delivery %d body %s (%v)", d.ID, d.Body, err)
		}
		switch d.EndpointID {
		case uuid.Nil:
			if len(d.Secrets) != 0 {
				t.Errorf("the workflow's own delivery carries secrets %v", d.Secrets)
			}
		case wfEP.ID, typeEP.ID:
			if len(d.Secrets) != 1 {
				t.Errorf("endpoint delivery %d secrets %v", d.ID, d.Secrets)
			}
		}
	}
	slices.Sort(urls)
	equal(t, "workflow deliveries", urls, []string{"https://a.example/own", "https://a.example/type", "https://a.example/wf"})
	for _, d := range ds {
		e.record(d, 204, store.DeliveryOutcome{Status: store.DeliveryDelivered})
	}
	page, err := e.s.ListDeliveryPage(e.ctx, store.DeliveryFilter{Scope: store.Scope{TenantID: "acme"},
		Statuses: []store.DeliveryStatus{store.DeliveryDelivered}})
	if err != nil || len(page.Deliveries) != 3 {
		t.Errorf("acme's delivered deliveries: %d, %v; want the workflow's 3", len(page.Deliveries), err)
	}
	if _, err := e.s.Redeliver(e.ctx, ds[0].ID, store.Scope{TenantID: "acme"}); err != nil {
		t.Errorf("acme redelivers its workflow's delivery: %v", err)
	}
	if _, err := e.s.Redeliver(e.ctx, ds[0].ID, store.Scope{TenantID: "other"}); !errors.Is(err, store.ErrDeliveryNotFound) {
		t.Errorf("another tenant redelivers acme's workflow delivery: %v", err)
	}
	page, err = e.s.ListDeliveryPage(e.ctx, store.DeliveryFilter{Scope: store.Scope{TenantID: "other"}})
	if err != nil || len(page.Deliveries) != 0 {
		t.Errorf("another tenant's ledger: %d, %v; want none", len(page.Deliveries), err)
	}
}
