package api_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/computeserver/compute/internal/config"
)

// endpointHit is one request an endpoint receiver got.
type endpointHit struct {
	path   string
	header http.Header
	raw    []byte
}

// endpointReceiver is a real HTTP receiver on loopback that keeps every
// request; paths under /fail answer 500 while failing is set.
type endpointReceiver struct {
	t       *testing.T
	srv     *httptest.Server
	failing atomic.Bool

	mu   sync.Mutex
	hits []endpointHit
}

func newEndpointReceiver(t *testing.T) *endpointReceiver {
	rc := &endpointReceiver{t: t}
	rc.failing.Store(true)
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.hits = append(rc.hits, endpointHit{path: r.URL.Path, header: r.Header.Clone(), raw: raw})
		rc.mu.Unlock()
		if strings.HasPrefix(r.URL.Path, "/fail") && rc.failing.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

// waitHits waits until path has n requests and returns them.
func (rc *endpointReceiver) waitHits(path string, n int) []endpointHit {
	rc.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var out []endpointHit
		rc.mu.Lock()
		for _, h := range rc.hits {
			if h.path == path {
				out = append(out, h)
			}
		}
		rc.mu.Unlock()
		if len(out) >= n {
			return out
		}
		if time.Now().After(deadline) {
			rc.t.Fatalf("receiver path %s got %d requests, want %d", path, len(out), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// verifies reports whether the reference library accepts h with secret.
func verifies(t *testing.T, secret string, h endpointHit) bool {
	t.Helper()
	v, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatalf("reference library refused secret %q: %v", secret, err)
	}
	return v.Verify(h.raw, h.header) == nil
}

// withEndpointWebhooks lets webhooks reach loopback, retries fast and
// fails a delivery after one attempt.
func withEndpointWebhooks(c *config.Config) {
	withWebhooks(c)
	c.WebhookMaxAttempts = 1
}

// TestWebhookEndpointsEndToEnd: endpoints created by a tenant and by an
// admin receive the matching events of real tasks, each signed with its
// own secret (checked by the Standard Webhooks reference library); after a
// rotation both signatures are sent and either secret verifies, until the
// overlap ends; failed deliveries are listed across tasks, page by page,
// and redelivered in bulk.
func TestWebhookEndpointsEndToEnd(t *testing.T) {
	t.Parallel()
	forEachDBWith(t, withEndpointWebhooks, func(t *testing.T, e *env) {
		rc := newEndpointReceiver(t)
		keyA := e.tenantKey("a")
		asA := []string{"Authorization", "Bearer " + keyA}
		epA := e.must(201, "POST", "/api/v1/webhooks/endpoints", map[string]any{
			"url": rc.srv.URL + "/a", "filter": map[string]any{"statuses": []string{"completed"}},
		}, asA...)
		secretA, _ := epA["secret"].(string)
		if epA["tenant_id"] != "a" || !strings.HasPrefix(secretA, "whsec_") || epA["enabled"] != true {
			t.Fatalf("tenant create answered %v", epA)
		}
		epAdmin := e.must(201, "POST", "/api/v1/webhooks/endpoints", map[string]any{
			"url": rc.srv.URL + "/fail", "filter": map[string]any{"task_types": []string{"echo"}, "statuses": []string{"completed"}},
		})
		if epAdmin["tenant_id"] != "" {
			t.Errorf("admin endpoint without tenant_id: %v", epAdmin)
		}
		// The secret is shown once.
		if got := e.must(200, "GET", "/api/v1/webhooks/endpoints/"+epA["id"].(string), nil, asA...); got["secret"] != nil {
			t.Errorf("GET shows the secret: %v", got)
		}

		runTask := func() string {
			id := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "hi"}, asA...)["id"].(string)
			e.waitStatus(id, "completed")
			return id
		}
		first := runTask()
		h := rc.waitHits("/a", 1)[0]
		if !verifies(t, secretA, h) || !strings.Contains(string(h.raw), first) || strings.Contains(h.header.Get("webhook-signature"), " ") {
			t.Fatalf("first delivery: signature %q, body %s", h.header.Get("webhook-signature"), h.raw)
		}
		if hf := rc.waitHits("/fail", 1)[0]; !verifies(t, epAdmin["secret"].(string), hf) || verifies(t, secretA, hf) {
			t.Errorf("the admin endpoint's request is not signed with its own secret only")
		}

		// Rotation: both signatures during the overlap.
		rot := e.must(200, "POST", "/api/v1/webhooks/endpoints/"+epA["id"].(string)+"/rotate", nil, asA...)
		newA, _ := rot["secret"].(string)
		if newA == secretA || !strings.HasPrefix(newA, "whsec_") || rot["previous_secret_expires_at"] == nil {
			t.Fatalf("rotate answered %v", rot)
		}
		runTask()
		h = rc.waitHits("/a", 2)[1]
		if n := len(strings.Fields(h.header.Get("webhook-signature"))); n != 2 {
			t.Errorf("during the overlap webhook-signature has %d signatures, want 2: %q", n, h.header.Get("webhook-signature"))
		}
		if !verifies(t, secretA, h) || !verifies(t, newA, h) {
			t.Errorf("during the overlap the old and the new secret must both verify")
		}
		// A rotation without overlap: the replaced secret stops at once.
		rot = e.must(200, "POST", "/api/v1/webhooks/endpoints/"+epA["id"].(string)+"/rotate", map[string]any{"overlap_seconds": 0}, asA...)
		newest := rot["secret"].(string)
		runTask()
		h = rc.waitHits("/a", 3)[2]
		if !verifies(t, newest, h) || verifies(t, newA, h) || verifies(t, secretA, h) {
			t.Errorf("after a rotation without overlap only the newest secret may verify")
		}

		// Three tasks, three failed deliveries to the admin's endpoint.
		rc.waitHits("/fail", 3)
		var failed []map[string]any
		deadline := time.Now().Add(30 * time.Second)
		cursor := ""
		for {
			path := "/api/v1/webhooks/deliveries?status=failed&limit=2&endpoint_id=" + epAdmin["id"].(string)
			if cursor != "" {
				path += "&cursor=" + cursor
			}
			page := e.must(200, "GET", path, nil)
			for _, d := range page["deliveries"].([]any) {
				failed = append(failed, d.(map[string]any))
			}
			cursor, _ = page["next_cursor"].(string)
			if cursor != "" {
				continue
			}
			if len(failed) == 3 || time.Now().After(deadline) {
				break
			}
			failed = nil
			time.Sleep(50 * time.Millisecond)
		}
		if len(failed) != 3 {
			t.Fatalf("failed deliveries over pages: %v, want 3", failed)
		}
		for _, d := range failed {
			if d["status"] != "failed" || d["endpoint_id"] != epAdmin["id"] || d["last_status_code"] != float64(500) {
				t.Errorf("failed delivery = %v", d)
			}
		}
		// Tenant a does not see the admin endpoint's deliveries.
		if page := e.must(200, "GET", "/api/v1/webhooks/deliveries?status=failed", nil, asA...); len(page["deliveries"].([]any)) != 0 {
			t.Errorf("tenant a sees %v", page["deliveries"])
		}
		if r := e.must(200, "POST", "/api/v1/webhooks/deliveries/redeliver", map[string]any{
			"filter": map[string]any{"endpoint_id": epAdmin["id"]},
		}, asA...); r["redelivered"] != float64(0) {
			t.Errorf("tenant a redelivered the admin's deliveries: %v", r)
		}

		rc.failing.Store(false)
		r := e.must(200, "POST", "/api/v1/webhooks/deliveries/redeliver", map[string]any{
			"filter": map[string]any{"endpoint_id": epAdmin["id"]},
		})
		if r["redelivered"] != float64(3) {
			t.Fatalf("bulk redeliver answered %v, want 3", r)
		}
		rc.waitHits("/fail", 6)
		deadline = time.Now().Add(30 * time.Second)
		for {
			page := e.must(200, "GET", "/api/v1/webhooks/deliveries?status=delivered&endpoint_id="+epAdmin["id"].(string), nil)
			if len(page["deliveries"].([]any)) == 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after redelivery: %v", page)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// TestWebhookEndpointsAreScoped: a tenant key manages only its own
// endpoints; bad input is a 422 problem at the field.
func TestWebhookEndpointsAreScoped(t *testing.T) {
	t.Parallel()
	forEachDBWith(t, withEndpointWebhooks, func(t *testing.T, e *env) {
		asA := []string{"Authorization", "Bearer " + e.tenantKey("a")}
		asB := []string{"Authorization", "Bearer " + e.tenantKey("b")}
		ep := e.must(201, "POST", "/api/v1/webhooks/endpoints", map[string]any{"url": "https://a.example/hook", "description": "a's"}, asA...)
		path := "/api/v1/webhooks/endpoints/" + ep["id"].(string)
		for _, req := range []struct{ method, path string }{{"GET", path}, {"PATCH", path}, {"DELETE", path}, {"POST", path + "/rotate"}} {
			var body any
			if req.method == "PATCH" {
				body = map[string]any{"enabled": false}
			}
			if r := e.do(req.method, req.path, body, asB...); r.status != 404 {
				t.Errorf("tenant b %s %s: %d %s, want 404", req.method, req.path, r.status, r.body)
			}
		}
		if l := e.must(200, "GET", "/api/v1/webhooks/endpoints", nil, asB...); len(l["endpoints"].([]any)) != 0 {
			t.Errorf("tenant b lists %v", l)
		}
		if l := e.must(200, "GET", "/api/v1/webhooks/endpoints", nil); len(l["endpoints"].([]any)) != 1 {
			t.Errorf("admin lists %v", l)
		}
		up := e.must(200, "PATCH", path, map[string]any{"enabled": false, "filter": map[string]any{"progress": true}}, asA...)
		if up["enabled"] != false || up["description"] != "a's" || up["filter"].(map[string]any)["progress"] != true {
			t.Errorf("PATCH answered %v", up)
		}
		problemAt(t, e.do("POST", "/api/v1/webhooks/endpoints", map[string]any{"url": "https://b.example", "tenant_id": "a"}, asB...), 422, "body.tenant_id")
		problemAt(t, e.do("POST", "/api/v1/webhooks/endpoints", map[string]any{"url": "ftp://x.example/"}, asA...), 422, "body.url")
		problemAt(t, e.do("POST", "/api/v1/webhooks/endpoints", map[string]any{"url": "https://u:p@x.example/"}, asA...), 422, "body.url")
		problemAt(t, e.do("POST", "/api/v1/webhooks/endpoints", map[string]any{"url": "https://x.example/",
			"filter": map[string]any{"task_types": []string{"nope"}}}, asA...), 422, "body.filter.task_types")
		problemAt(t, e.do("GET", "/api/v1/webhooks/deliveries?status=lost", nil), 422, "query.status")
		problemAt(t, e.do("GET", "/api/v1/webhooks/deliveries?endpoint_id=x", nil), 422, "query.endpoint_id")
		problemAt(t, e.do("GET", "/api/v1/webhooks/deliveries?cursor=bad", nil), 422, "query.cursor")
		problemAt(t, e.do("POST", "/api/v1/webhooks/deliveries/redeliver", map[string]any{}, asA...), 422, "body")
		problemAt(t, e.do("POST", "/api/v1/webhooks/deliveries/redeliver", map[string]any{"ids": []int{1}, "filter": map[string]any{}}, asA...), 422, "body")
		if r := e.do("GET", "/api/v1/webhooks/endpoints/not-an-id", nil); r.status != 404 {
			t.Errorf("bad id: %d", r.status)
		}
		e.must(204, "DELETE", path, nil, asA...)
		if r := e.do("GET", path, nil); r.status != 404 {
			t.Errorf("after delete: %d %s", r.status, r.body)
		}
	})
}
