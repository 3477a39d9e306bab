package api_test

import (
	"testing"
	"time"
)

// TestSchedulingRoutes: an admin pauses a queue (its new task stays
// pending while others run) and resumes it (the task runs), lists the
// pauses, sets and removes a tenant's limit; a tenant key reads only its
// own limit and changes nothing; bad input is a 422 problem.
func TestSchedulingRoutes(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		e.must(200, "POST", "/api/v1/scheduling/pauses", map[string]any{"kind": "queue", "name": "held", "reason": "maintenance"})
		// Pausing again keeps the pause and takes the new reason.
		p := e.must(200, "POST", "/api/v1/scheduling/pauses", map[string]any{"kind": "queue", "name": "held", "reason": "still"})
		if p["kind"] != "queue" || p["name"] != "held" || p["reason"] != "still" || p["since"] == "" {
			t.Fatalf("pause answered %v", p)
		}
		held := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "x", "queue_name": "held"})["id"].(string)
		free := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "y"})["id"].(string)
		e.waitStatus(free, "completed")
		time.Sleep(300 * time.Millisecond) // a claim or two more
		if st := e.must(200, "GET", "/api/v1/tasks/"+held, nil)["status"]; st != "pending" {
			t.Fatalf("the task of the paused queue is %v, want pending", st)
		}
		l := e.must(200, "GET", "/api/v1/scheduling/pauses", nil)
		if ps, _ := l["pauses"].([]any); len(ps) != 1 {
			t.Fatalf("pauses: %v, want the queue's", l)
		}
		r := e.must(200, "POST", "/api/v1/scheduling/pauses/resume", map[string]any{"kind": "queue", "name": "held"})
		if r["resumed"] != true {
			t.Fatalf("resume answered %v", r)
		}
		e.waitStatus(held, "completed")
		if r := e.must(200, "POST", "/api/v1/scheduling/pauses/resume", map[string]any{"kind": "queue", "name": "held"}); r["resumed"] != false {
			t.Fatalf("a second resume answered %v, want resumed false", r)
		}

		// Bad input.
		problemAt(t, e.do("POST", "/api/v1/scheduling/pauses", map[string]any{"kind": "tenant", "name": "x"}), 422, "body.kind")
		problemAt(t, e.do("POST", "/api/v1/scheduling/pauses", map[string]any{"kind": "queue", "name": ""}), 422, "body.name")
		problemAt(t, e.do("POST", "/api/v1/scheduling/pauses", map[string]any{"kind": "server", "name": "gpu-1:8188"}), 422, "body.name")
		problemAt(t, e.do("PUT", "/api/v1/tenants/acme/limit", map[string]any{"max_concurrency": -1}), 422, "body.max_concurrency")
		problemAt(t, e.do("PUT", "/api/v1/tenants/%20acme/limit", map[string]any{"max_concurrency": 1}), 422, "path.tenant")

		// Tenant limits.
		if m := e.must(200, "PUT", "/api/v1/tenants/acme/limit", map[string]any{"max_concurrency": 3}); m["max_concurrency"] != float64(3) || m["tenant_id"] != "acme" {
			t.Fatalf("set limit answered %v", m)
		}
		acme := []string{"Authorization", "Bearer " + e.tenantKey("acme")}
		if m := e.must(200, "GET", "/api/v1/tenants/acme/limit", nil, acme...); m["max_concurrency"] != float64(3) {
			t.Fatalf("acme reads its limit as %v", m)
		}
		problemAt(t, e.do("GET", "/api/v1/tenants/other/limit", nil, acme...), 404, "")
		problemAt(t, e.do("PUT", "/api/v1/tenants/acme/limit", map[string]any{"max_concurrency": 100}, acme...), 403, "")
		problemAt(t, e.do("GET", "/api/v1/scheduling/pauses", nil, acme...), 403, "")
		problemAt(t, e.do("POST", "/api/v1/scheduling/pauses", map[string]any{"kind": "queue", "name": "x"}, acme...), 403, "")
		problemAt(t, e.do("POST", "/api/v1/scheduling/pauses/resume", map[string]any{"kind": "queue", "name": "x"}, acme...), 403, "")
		e.must(200, "PUT", "/api/v1/tenants/acme/limit", map[string]any{"max_concurrency": 0})
		if m := e.must(200, "GET", "/api/v1/tenants/acme/limit", nil); m["max_concurrency"] != float64(0) {
			t.Fatalf("a removed limit reads %v", m)
		}
	})
}
