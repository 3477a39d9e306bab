package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/testutil/s3server"
)

// TestDeleteTask: DELETE removes a finished task, its events, deliveries
// and artifacts (from the local directory or the S3 bucket, where the API
// also serves them from, Ranges included); a pending task is a 409 problem,
// another tenant's a 404, and a tenant deletes its own.
func TestDeleteTask(t *testing.T) {
	t.Parallel()
	for _, where := range []string{"local", "s3"} {
		t.Run(where, func(t *testing.T) {
			t.Parallel()
			var srv *s3server.Server
			e := start(t, "sqlite", func(c *config.Config) {
				if where == "s3" {
					srv = s3server.Start(t)
					srv.Configure(c, "compute")
				}
			})
			done := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "generation", "prompt": "a dress", "width": 64, "height": 64})
			id := done["id"].(string)
			e.waitStatus(id, "completed")
			res := e.must(200, "GET", "/api/v1/tasks/"+id+"/result", nil)
			art := res["result"].(map[string]any)["artifacts"].([]any)[0].(map[string]any)
			url := strings.TrimPrefix(art["url"].(string), e.base)
			if r := e.do("GET", url, nil); r.status != 200 || len(r.body) != int(art["size"].(float64)) {
				t.Fatalf("artifact: %d, %d bytes", r.status, len(r.body))
			}
			if r := e.do("GET", url, nil, "Range", "bytes=1-4"); r.status != http.StatusPartialContent || len(r.body) != 4 {
				t.Fatalf("artifact range: %d, %d bytes", r.status, len(r.body))
			}
			if srv != nil {
				if keys := srv.Keys(t, "compute/tasks/"+id+"/"); len(keys) != 1 {
					t.Fatalf("bucket keys %v", keys)
				}
			}

			// Not finished: 409, and the task stays.
			later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
			pending := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "later", "run_at": later})
			r := e.do("DELETE", "/api/v1/tasks/"+pending["id"].(string), nil)
			problemAt(t, r, http.StatusConflict, "")
			if d := r.json(t)["detail"].(string); !strings.Contains(d, "the task is pending") || !strings.Contains(d, "cancel it first") {
				t.Errorf("409 detail %q", d)
			}
			e.must(200, "GET", "/api/v1/tasks/"+pending["id"].(string), nil)

			// Another tenant's task: 404, and nothing is removed.
			acme := e.tenantKey("acme")
			problemAt(t, e.do("DELETE", "/api/v1/tasks/"+id, nil, "Authorization", "Bearer "+acme), http.StatusNotFound, "")
			if r := e.do("GET", url, nil); r.status != 200 {
				t.Fatalf("the artifact after another tenant's delete: %d", r.status)
			}

			if r := e.do("DELETE", "/api/v1/tasks/"+id, nil); r.status != http.StatusNoContent || len(r.body) != 0 {
				t.Fatalf("DELETE: %d %s", r.status, r.body)
			}
			for _, p := range []string{"/api/v1/tasks/" + id, "/api/v1/tasks/" + id + "/result", "/api/v1/tasks/" + id + "/webhooks", url} {
				problemAt(t, e.do("GET", p, nil), http.StatusNotFound, "")
			}
			problemAt(t, e.do("DELETE", "/api/v1/tasks/"+id, nil), http.StatusNotFound, "")
			if srv != nil {
				if keys := srv.Keys(t, "compute/tasks/"+id+"/"); len(keys) != 0 {
					t.Errorf("objects left in the bucket: %v", keys)
				}
			}
			if objs, err := e.app.Artifacts.ListTask(t.Context(), id); err != nil || len(objs) != 0 {
				t.Errorf("artifacts left: %v %v", objs, err)
			}

			// A tenant deletes its own task.
			own := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "mine"}, "Authorization", "Bearer "+acme)
			e.waitStatus(own["id"].(string), "completed")
			if r := e.do("DELETE", "/api/v1/tasks/"+own["id"].(string), nil, "Authorization", "Bearer "+acme); r.status != http.StatusNoContent {
				t.Errorf("a tenant deletes its own task: %d %s", r.status, r.body)
			}
		})
	}
}

// TestArtifactStoreOutage: while the S3 server is down, an artifact is a
// 503 (not a 404: it may well exist) and a DELETE is a 503 that leaves the
// task in place, to be deleted again.
func TestArtifactStoreOutage(t *testing.T) {
	t.Parallel()
	srv := s3server.Start(t)
	e := start(t, "sqlite", func(c *config.Config) { srv.Configure(c, "") })
	done := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "generation", "prompt": "a dress", "width": 64, "height": 64})
	id := done["id"].(string)
	e.waitStatus(id, "completed")
	path := "/api/v1/artifacts/tasks/" + id + "/image.png"
	if r := e.do("GET", path, nil); r.status != 200 {
		t.Fatalf("artifact: %d", r.status)
	}
	srv.Stop()
	r := e.do("GET", path, nil)
	problemAt(t, r, http.StatusServiceUnavailable, "")
	if r.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	problemAt(t, e.do("DELETE", "/api/v1/tasks/"+id, nil), http.StatusServiceUnavailable, "")
	if got := e.must(200, "GET", "/api/v1/tasks/"+id, nil)["status"]; got != "completed" {
		t.Errorf("the task after a failed delete: %v", got)
	}
}
