package api_test

import (
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
