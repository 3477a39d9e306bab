package api_test

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

const webhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// hookRequest is one request a receiver got.
type hookRequest struct {
	id   string
	body map[string]any
	raw  []byte
}

// hookReceiver is a real HTTP receiver on loopback that accepts every
// request after checking its signature with the Standard Webhooks
// reference library.
type hookReceiver struct {
	t   *testing.T
	srv *httptest.Server

	mu   sync.Mutex
	reqs []hookRequest
}

func newHookReceiver(t *testing.T) *hookReceiver {
	t.Helper()
	verifier, err := standardwebhooks.NewWebhook(webhookSecret)
	if err != nil {
		t.Fatal(err)
	}
	rc := &hookReceiver{t: t}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		if err := verifier.Verify(raw, r.Header); err != nil {
			t.Errorf("receiver: signature refused by the reference library: %v", err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var body map[string]any
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Errorf("receiver: body %s: %v", raw, err)
		}
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, hookRequest{id: r.Header.Get("webhook-id"), body: body, raw: raw})
		rc.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *hookReceiver) requests() []hookRequest {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]hookRequest(nil), rc.reqs...)
}

// waitFor waits until the receiver has n requests, then a little longer
// to see that no more come, and returns them.
func (rc *hookReceiver) waitFor(n int) []hookRequest {
	rc.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for len(rc.requests()) < n {
		if time.Now().After(deadline) {
			rc.t.Fatalf("receiver got %d requests, want %d", len(rc.requests()), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	return rc.requests()
}

// withWebhooks configures signed webhooks that may reach loopback.
func withWebhooks(c *config.Config) {
	c.WebhookSecret = webhookSecret
	c.WebhookAllowPrivate = true
	c.WebhookRetryMin = time.Second
}

// forEachDBWith is forEachDB with a configuration change.
func forEachDBWith(t *testing.T, mutate func(*config.Config), fn func(t *testing.T, e *env)) {
	for _, d := range testdb.Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			fn(t, start(t, d, mutate))
		})
	}
}

// deliveries returns GET /tasks/{id}/webhooks's deliveries.
func (e *env) deliveries(id string, hdr ...string) []map[string]any {
	e.t.Helper()
	m := e.must(200, "GET", "/api/v1/tasks/"+id+"/webhooks", nil, hdr...)
	if m["task_id"] != id {
		e.t.Errorf("webhooks of %s answered for task %v", id, m["task_id"])
	}
	var out []map[string]any
	for _, d := range m["deliveries"].([]any) {
		out = append(out, d.(map[string]any))
	}
	return out
}

// waitDelivered polls the task's deliveries until n exist and none is
// pending.
func (e *env) waitDelivered(id string, n int) []map[string]any {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ds := e.deliveries(id)
		done := len(ds) == n
		for _, d := range ds {
			done = done && d["status"] == "delivered"
		}
		if done {
			return ds
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("deliveries of %s: %v; want %d delivered", id, ds, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWebhookEndToEnd: a task created with webhook_url and
// webhook_events ["completed"] is delivered exactly once, signed, with the
// completed event's body; the ledger shows it; a redelivery sends the same
// event again with the same webhook-id.
func TestWebhookEndToEnd(t *testing.T) {
	t.Parallel()
	forEachDBWith(t, withWebhooks, func(t *testing.T, e *env) {
		rc := newHookReceiver(t)
		created := e.must(201, "POST", "/api/v1/tasks/", map[string]any{
			"task_type": "echo", "message": "hook me", "webhook_url": rc.srv.URL + "/hooks?token=t1", "webhook_events": []string{"completed"},
		})
		id := created["id"].(string)
		e.waitStatus(id, "completed")
		reqs := rc.waitFor(1)
		if len(reqs) != 1 {
			t.Fatalf("receiver got %d requests, want exactly 1", len(reqs))
		}
		b := reqs[0].body
		if b["task_id"] != id || b["status"] != "completed" || b["event_type"] != "echo_status_update" || b["task_type"] != "echo" ||
			b["entity_id"] != id || b["progress"] != float64(100) || b["completed_at"] == nil || b["timestamp"] == nil {
			t.Errorf("webhook body = %s", reqs[0].raw)
		}

		ds := e.waitDelivered(id, 1)
		d := ds[0]
		if fmt.Sprint(d["event_id"]) != reqs[0].id || d["event_type"] != "echo_status_update" || d["event_status"] != "completed" ||
			d["url"] != rc.srv.URL+"/hooks?token=t1" || d["attempt_count"] != float64(1) || d["last_status_code"] != float64(204) ||
			d["delivered_at"] == nil || d["next_attempt_at"] != nil {
			t.Errorf("delivery = %v; webhook-id was %s", d, reqs[0].id)
		}
		attempts := d["attempts"].([]any)
		if len(attempts) != 1 {
			t.Fatalf("attempts = %v", attempts)
		}
		if a := attempts[0].(map[string]any); a["attempt"] != float64(1) || a["status_code"] != float64(204) ||
			a["duration_ms"].(float64) <= 0 || a["started_at"] == nil {
			t.Errorf("attempt = %v", a)
		}

		did := fmt.Sprint(d["id"])
		r := e.must(200, "POST", "/api/v1/webhooks/deliveries/"+did+"/redeliver", nil)
		if r["status"] != "pending" || r["redelivered_at"] == nil || r["next_attempt_at"] == nil || len(r["attempts"].([]any)) != 1 {
			t.Errorf("redeliver answered %v", r)
		}
		reqs = rc.waitFor(2)
		if len(reqs) != 2 || reqs[1].id != reqs[0].id || string(reqs[1].raw) != string(reqs[0].raw) {
			t.Fatalf("after redeliver the receiver got %d requests: %+v; want the same event again", len(reqs), reqs)
		}
		d = e.waitDelivered(id, 1)[0]
		attempts = d["attempts"].([]any)
		if d["attempt_count"] != float64(2) || len(attempts) != 2 || attempts[1].(map[string]any)["attempt"] != float64(2) {
			t.Errorf("after redelivery: %v", d)
		}
	})
}

// TestWebhookProgressEvents: with webhook_events ["progress","completed"]
// a generation task's receiver gets its progress events and its
// completion, and nothing else.
func TestWebhookProgressEvents(t *testing.T) {
	t.Parallel()
	forEachDBWith(t, withWebhooks, func(t *testing.T, e *env) {
		rc := newHookReceiver(t)
		created := e.must(201, "POST", "/api/v1/tasks/", map[string]any{
			"task_type": "generation", "prompt": "a red dress", "width": 64, "height": 64,
			"webhook_url": rc.srv.URL, "webhook_events": []string{"progress", "completed"},
		})
		id := created["id"].(string)
		e.waitStatus(id, "completed")
		ds := e.deliveries(id)
		if len(ds) < 2 {
			t.Fatalf("deliveries = %v; want progress events and the completion", ds)
		}
		ds = e.waitDelivered(id, len(ds))
		reqs := rc.waitFor(len(ds))
		if len(reqs) != len(ds) {
			t.Fatalf("receiver got %d requests for %d deliveries", len(reqs), len(ds))
		}
		ids := map[string]bool{}
		completed := 0
		for _, r := range reqs {
			ids[r.id] = true
			switch r.body["event_type"] {
			case "generation_progress_update":
			case "generation_status_update":
				if r.body["status"] != "completed" {
					t.Errorf("a %v status event was delivered; the filter names completed only", r.body["status"])
				}
				completed++
			default:
				t.Errorf("unexpected event %s", r.raw)
			}
		}
		if completed != 1 || len(ids) != len(reqs) {
			t.Errorf("%d completions, %d distinct webhook-ids for %d requests", completed, len(ids), len(reqs))
		}
	})
}

// TestWebhookDefaultURL: COMPUTE_WEBHOOK_URL receives every status change
// of a task that names no webhook_url.
func TestWebhookDefaultURL(t *testing.T) {
	t.Parallel()
	rc := newHookReceiver(t)
	e := start(t, "sqlite", withWebhooks, func(c *config.Config) { c.WebhookURL = rc.srv.URL + "/default" })
	created := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "no hook of its own"})
	id := created["id"].(string)
	e.waitStatus(id, "completed")
	e.waitDelivered(id, 3)
	// Deliveries are concurrent, so they may arrive in any order; the
	// webhook-id (the event id) gives the order of the events.
	got := map[int64]string{}
	for _, r := range rc.waitFor(3) {
		n, err := strconv.ParseInt(r.id, 10, 64)
		if err != nil {
			t.Fatalf("webhook-id %q is not an event id", r.id)
		}
		got[n], _ = r.body["status"].(string)
	}
	ids := slices.Sorted(maps.Keys(got))
	var order []string
	for _, id := range ids {
		order = append(order, got[id])
	}
	if fmt.Sprint(order) != "[pending executing completed]" {
		t.Errorf("default URL got %v by webhook-id, want every status change", got)
	}
}

// TestWebhookRoutesAreScoped: another tenant's task and delivery answer
// 404 as if absent, like unknown and malformed ids.
func TestWebhookRoutesAreScoped(t *testing.T) {
	t.Parallel()
	forEachDBWith(t, withWebhooks, func(t *testing.T, e *env) {
		rc := newHookReceiver(t)
		keyA, keyB := e.tenantKey("acme"), e.tenantKey("globex")
		asA, asB := []string{"Authorization", "Bearer " + keyA}, []string{"Authorization", "Bearer " + keyB}
		created := e.must(201, "POST", "/api/v1/tasks/", map[string]any{
			"task_type": "echo", "message": "acme's", "webhook_url": rc.srv.URL, "webhook_events": []string{"pending"},
		}, asA...)
		id := created["id"].(string)
		ds := e.deliveries(id, asA...)
		if len(ds) != 1 {
			t.Fatalf("acme sees deliveries %v, want 1", ds)
		}
		did := fmt.Sprint(ds[0]["id"])
		problemAt(t, e.do("GET", "/api/v1/tasks/"+id+"/webhooks", nil, asB...), 404, "")
		problemAt(t, e.do("POST", "/api/v1/webhooks/deliveries/"+did+"/redeliver", nil, asB...), 404, "")
		problemAt(t, e.do("GET", "/api/v1/tasks/01a219db-3e96-7ead-9359-7651978f18c0/webhooks", nil), 404, "")
		problemAt(t, e.do("GET", "/api/v1/tasks/xyz/webhooks", nil), 404, "")
		problemAt(t, e.do("POST", "/api/v1/webhooks/deliveries/999999/redeliver", nil), 404, "")
		problemAt(t, e.do("POST", "/api/v1/webhooks/deliveries/abc/redeliver", nil), 404, "")
		problemAt(t, e.do("GET", "/api/v1/tasks/"+id+"/webhooks", nil, "Authorization", ""), 401, "")
		e.must(200, "POST", "/api/v1/webhooks/deliveries/"+did+"/redeliver", nil, asA...)
		e.must(200, "POST", "/api/v1/webhooks/deliveries/"+did+"/redeliver", nil) // admin
		// A task without deliveries has an empty list, not a 404.
		quiet := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "quiet"}, asA...)
		if ds := e.deliveries(quiet["id"].(string), asA...); len(ds) != 0 {
			t.Errorf("a task without webhook has deliveries %v", ds)
		}
	})
}

// TestWebhookRoutesInOpenAPI: both routes are documented.
func TestWebhookRoutesInOpenAPI(t *testing.T) {
	t.Parallel()
	e := start(t, "sqlite", func(c *config.Config) { c.Workers = 0 })
	doc := e.must(200, "GET", "/openapi.json", nil, "Authorization", "")
	paths := doc["paths"].(map[string]any)
	for path, method := range map[string]string{
		"/api/v1/tasks/{task_id}/webhooks":           "get",
		"/api/v1/webhooks/deliveries/{id}/redeliver": "post",
	} {
		item, _ := paths[path].(map[string]any)
		op, _ := item[method].(map[string]any)
		if op == nil || op["summary"] == "" || op["responses"].(map[string]any)["404"] == nil {
			t.Errorf("%s %s is not documented: %v", method, path, item)
		}
	}
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	for _, name := range []string{"WebhookDelivery", "WebhookAttempt"} {
		if schemas[name] == nil {
			t.Errorf("schema %s missing", name)
		}
	}
}
