package api_test

import (
	"strings"
	"testing"
)

// TestForeignTenantSameAnswerEverywhere: a tenant key that names another
// tenant's origin_tenant_id gets the same 422, located at the parameter,
// on every route that takes one; naming its own tenant is accepted.
func TestForeignTenantSameAnswerEverywhere(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		asA := []string{"Authorization", "Bearer " + e.tenantKey("tenant-a")}
		foreign := []struct {
			name, method, path string
			body               any
			loc                string
		}{
			{"create", "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "x", "origin_tenant_id": "tenant-b"}, "body.origin_tenant_id"},
			{"typed create", "POST", "/api/v1/tasks/echo", map[string]any{"message": "x", "origin_tenant_id": "tenant-b"}, "body.origin_tenant_id"},
			{"list", "GET", "/api/v1/tasks/?origin_tenant_id=tenant-b", nil, "query.origin_tenant_id"},
			{"events", "GET", "/api/v1/events?origin_tenant_id=tenant-b", nil, "query.origin_tenant_id"},
		}
		var message string
		for _, tt := range foreign {
			r := e.do(tt.method, tt.path, tt.body, asA...)
			problemAt(t, r, 422, tt.loc)
			errs, _ := r.json(t)["errors"].([]any)
			if len(errs) != 1 {
				t.Fatalf("%s: errors %v, want one", tt.name, errs)
			}
			got, _ := errs[0].(map[string]any)["message"].(string)
			if message == "" {
				message = got
			}
			if got != message {
				t.Errorf("%s answers %q, create answers %q", tt.name, got, message)
			}
		}
		// Its own tenant is fine, and the admin may name any.
		e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "x", "origin_tenant_id": "tenant-a", "run_at": "2099-01-01T00:00:00Z"}, asA...)
		if l := e.must(200, "GET", "/api/v1/tasks/?origin_tenant_id=tenant-a", nil, asA...); len(l["items"].([]any)) != 1 {
			t.Errorf("tenant a lists its own tasks by filter: %v", l)
		}
		if l := e.must(200, "GET", "/api/v1/tasks/?origin_tenant_id=tenant-b", nil); len(l["items"].([]any)) != 0 {
			t.Errorf("admin lists tenant b: %v", l)
		}
	})
}

// TestCreateRefusesBadTenantNames: origin_tenant_id follows the tenant-name
// rule of `compute apikey create --tenant` (no leading or trailing white
// space, no control characters, at most 256 characters), answered with a
// 422 located at the field and stating the rule, on both create routes.
func TestCreateRefusesBadTenantNames(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		tests := []struct {
			name, tenant, rule string
		}{
			{name: "blank", tenant: "   ", rule: "blank"},
			{name: "leading space", tenant: " acme", rule: "white space"},
			{name: "trailing newline", tenant: "acme\n", rule: "white space"},
			{name: "control character", tenant: "ac\x07me", rule: "control characters"},
			{name: "257 characters", tenant: strings.Repeat("a", 257), rule: "256"},
		}
		for _, tt := range tests {
			for _, path := range []string{"/api/v1/tasks/", "/api/v1/tasks/echo"} {
				body := map[string]any{"task_type": "echo", "message": "x", "origin_tenant_id": tt.tenant}
				r := e.do("POST", path, body)
				problemAt(t, r, 422, "body.origin_tenant_id")
				if !strings.Contains(string(r.body), tt.rule) {
					t.Errorf("%s on %s: %s, want the rule (%q)", tt.name, path, r.body, tt.rule)
				}
			}
		}
		ok := e.must(201, "POST", "/api/v1/tasks/", map[string]any{
			"task_type": "echo", "message": "x", "origin_tenant_id": "acme corp", "run_at": "2099-01-01T00:00:00Z",
		})
		if ok["origin_tenant_id"] != "acme corp" {
			t.Errorf("a good tenant name came back as %v", ok["origin_tenant_id"])
		}
	})
}
