package api_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/executor/cog/cogfake"
)

// A generation task on a Cog container runs through the real server: the
// container's only answer is the webhook to our callback route (§3.2 of
// the executors reference), which wakes the run; the task completes with
// the image in the artifact store. A callback with a token no job expects
// is refused.
func TestCogCallbackRoute(t *testing.T) {
	t.Parallel()
	container := cogfake.NewServer(cogfake.Config{})
	t.Cleanup(container.Close)
	e := start(t, "sqlite", func(c *config.Config) {
		c.Executors = map[string]config.ExecutorEntry{
			"gpu": {Type: "cog", Settings: json.RawMessage(fmt.Sprintf(`{"url": %q}`, container.URL))},
		}
		c.Types = map[string]config.TypeEntry{"generation": {Executor: "gpu"}}
	})
	m := e.must(201, "POST", "/api/v1/tasks/generation", map[string]any{"prompt": "a dress", "width": 64, "height": 64})
	done := e.waitStatus(fmt.Sprint(m["id"]), "completed", "failed")
	if done["status"] != "completed" {
		t.Fatalf("task ended %v: %v", done["status"], done["error_message"])
	}
	if got := len(container.Deliveries()); got == 0 {
		t.Error("the container delivered no webhook")
	}
	res := e.must(200, "GET", fmt.Sprintf("/api/v1/tasks/%v/result", m["id"]), nil)
	result, _ := res["result"].(map[string]any)
	if arts, _ := result["artifacts"].([]any); len(arts) != 1 {
		t.Errorf("result %v, want one artifact", res)
	}

	r := e.do("POST", "/api/v1/callbacks/cog/0000000000000000000000000000000000000000000000000000000000000000", map[string]any{"status": "succeeded"})
	if r.status != 404 || r.header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("a callback for no job: %d %s, want a 404 problem", r.status, r.header.Get("Content-Type"))
	}
	if r := e.do("GET", "/api/v1/callbacks/cog/abc", nil); r.status != 405 {
		t.Errorf("GET of the callback route: %d, want 405", r.status)
	}
}
