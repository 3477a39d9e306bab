package api_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// workflowHits waits until path has a workflow_status_update request of
// workflow id with status want, and returns the path's requests, each of
// which must be one of that workflow's events.
func (rc *endpointReceiver) workflowHits(path, id, want string) []endpointHit {
	rc.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var (
			out  []endpointHit
			seen bool
		)
		rc.mu.Lock()
		for _, h := range rc.hits {
			if h.path == path {
				out = append(out, h)
			}
		}
		rc.mu.Unlock()
		for _, h := range out {
			var b struct {
				EventType  string `json:"event_type"`
				WorkflowID string `json:"workflow_id"`
				Status     string `json:"status"`
			}
			if err := json.Unmarshal(h.raw, &b); err != nil || b.EventType != "workflow_status_update" || b.WorkflowID != id {
				rc.t.Fatalf("%s got %s (%v), want workflow %s's events only", path, h.raw, err, id)
			}
			seen = seen || b.Status == want
		}
		if seen {
			return out
		}
		if time.Now().After(deadline) {
			rc.t.Fatalf("%s got %d requests, none for workflow %s %s", path, len(out), id, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWorkflowEventsReachWebhooks: a workflow's workflow_status_update
// events reach its own webhook_url (signed with the server's secret) and
// the endpoints whose filter wants them (each signed with its own secret),
// checked by the Standard Webhooks reference library on a real loopback
// receiver; the deliveries are in the tenant's ledger. A webhook_url that
// is not an http(s) URL, or has credentials, is a 422.
func TestWorkflowEventsReachWebhooks(t *testing.T) {
	t.Parallel()
	forEachDBWith(t, withEndpointWebhooks, func(t *testing.T, e *env) {
		rc := newEndpointReceiver(t)
		asA := []string{"Authorization", "Bearer " + e.tenantKey("a")}
		epA := e.must(201, "POST", "/api/v1/webhooks/endpoints", map[string]any{
			"url": rc.srv.URL + "/a", "filter": map[string]any{"event_types": []string{"workflow_status_update"}},
		}, asA...)
		epAdmin := e.must(201, "POST", "/api/v1/webhooks/endpoints", map[string]any{
			"url": rc.srv.URL + "/admin", "filter": map[string]any{"task_types": []string{"workflow"}, "statuses": []string{"completed"}},
		})
		for _, bad := range []string{"ftp://hooks.example/x", "https://user:pw@hooks.example/x"} {
			e.must(422, "POST", "/api/v1/workflows/", map[string]any{"webhook_url": bad, "steps": []any{
				map[string]any{"id": "a", "task": map[string]any{"task_type": "echo", "message": "hi"}},
			}}, asA...)
		}
		m := e.must(201, "POST", "/api/v1/workflows/", map[string]any{"start": true, "webhook_url": rc.srv.URL + "/own", "steps": []any{
			map[string]any{"id": "a", "task": map[string]any{"task_type": "echo", "message": "hi"}},
			map[string]any{"id": "b", "depends_on": []string{"a"}, "task": map[string]any{"task_type": "echo", "message": "then"}},
		}}, asA...)
		id := m["id"].(string)
		if m["webhook_url"] != rc.srv.URL+"/own" {
			t.Errorf("created workflow shows webhook_url %v", m["webhook_url"])
		}
		e.waitWorkflow(id, "completed")

		own := rc.workflowHits("/own", id, "completed")
		for _, h := range own {
			if !verifies(t, webhookSecret, h) {
				t.Errorf("the workflow's own delivery does not verify with the server's secret: %q", h.header.Get("webhook-signature"))
			}
		}
		for _, h := range rc.workflowHits("/a", id, "completed") {
			if !verifies(t, epA["secret"].(string), h) {
				t.Errorf("tenant endpoint's delivery does not verify with its secret")
			}
		}
		admin := rc.workflowHits("/admin", id, "completed")
		if len(admin) != 1 || !verifies(t, epAdmin["secret"].(string), admin[0]) {
			t.Errorf("admin endpoint got %d requests, want the completed event, signed with its secret", len(admin))
		}
		if len(own) < 3 {
			t.Errorf("own webhook_url got %d events, want pending, running and completed", len(own))
		}

		// The tenant's ledger lists the workflow's deliveries (its own
		// URL's and its endpoint's), not the admin endpoint's.
		deadline := time.Now().Add(30 * time.Second)
		for {
			page := e.must(200, "GET", "/api/v1/webhooks/deliveries?status=delivered&event_type=workflow_status_update", nil, asA...)
			ds := page["deliveries"].([]any)
			n := 0
			for _, d := range ds {
				dm := d.(map[string]any)
				if dm["endpoint_id"] == epAdmin["id"] {
					t.Fatalf("tenant a sees the admin endpoint's delivery %v", dm)
				}
				if strings.HasSuffix(dm["url"].(string), "/own") || strings.HasSuffix(dm["url"].(string), "/a") {
					n++
				}
			}
			if n >= 2*len(own) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("tenant a's ledger of workflow deliveries: %v", ds)
			}
			time.Sleep(50 * time.Millisecond)
		}
		checkWorkflowDeliveries(t, e, id, asA, epAdmin["id"].(string), len(own))
	})
}

// checkWorkflowDeliveries checks GET /api/v1/workflows/{id}/webhooks, the
// per-workflow view of the ledger, once the deliveries of the workflow
// id's events (own of them to its webhook_url) are recorded: its owner
// (headers asOwner) sees its own URL's and its endpoint's deliveries with
// their attempts, oldest first, not those of the admin's endpoint
// adminEndpoint, which the admin sees too; another tenant and unknown
// or malformed ids get a 404 problem.
func checkWorkflowDeliveries(t *testing.T, e *env, id string, asOwner []string, adminEndpoint string, own int) {
	t.Helper()
	path := "/api/v1/workflows/" + id + "/webhooks"
	view := e.must(200, "GET", path, nil, asOwner...)
	if view["workflow_id"] != id {
		t.Errorf("workflow_id %v, want %s", view["workflow_id"], id)
	}
	ds := view["deliveries"].([]any)
	var ownURL, lastID float64
	for _, d := range ds {
		dm := d.(map[string]any)
		if dm["task_id"] != id || dm["event_type"] != "workflow_status_update" {
			t.Errorf("delivery %v is not of workflow %s's events", dm, id)
		}
		if dm["endpoint_id"] == adminEndpoint {
			t.Errorf("the owner sees the admin endpoint's delivery %v", dm)
		}
		if dm["id"].(float64) <= lastID {
			t.Errorf("deliveries not oldest first: %v after %v", dm["id"], lastID)
		}
		lastID = dm["id"].(float64)
		if strings.HasSuffix(dm["url"].(string), "/own") {
			ownURL++
			if as := dm["attempts"].([]any); dm["status"] != "delivered" || len(as) != 1 || as[0].(map[string]any)["status_code"] == nil {
				t.Errorf("own delivery %v, want delivered with its one attempt", dm)
			}
		}
	}
	if int(ownURL) != own || len(ds) != 2*own {
		t.Errorf("%d deliveries, %v to the own URL; want %d there and as many to the endpoint", len(ds), ownURL, own)
	}
	admin := e.must(200, "GET", path, nil)["deliveries"].([]any)
	if len(admin) != len(ds)+1 {
		t.Errorf("the admin sees %d deliveries, want the owner's %d and its endpoint's", len(admin), len(ds))
	}
	for _, p := range []string{path, "/api/v1/workflows/" + "00000000-0000-4000-8000-000000000000/webhooks", "/api/v1/workflows/nope/webhooks"} {
		hdr := []string{"Authorization", "Bearer " + e.tenantKey("b")}
		if p != path {
			hdr = asOwner
		}
		if r := e.do("GET", p, nil, hdr...); r.status != 404 || !strings.Contains(r.header.Get("Content-Type"), "problem+json") {
			t.Errorf("GET %s: %d %s, want a 404 problem", p, r.status, r.body)
		}
	}
}
