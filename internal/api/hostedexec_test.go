package api_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/executor/cog/cogfake"
	"github.com/computeserver/compute/internal/executor/fal/falfake"
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
	if err := container.WaitHealth(t.Context(), cogfake.HealthReady); err != nil {
		t.Fatal(err)
	}
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

// A generation task on fal whose reference image is one of our own
// artifacts — a loopback URL fal could never fetch — hands it over inline
// as a data URI, and completes with fal's image downloaded into our
// artifact store (fal's media URLs expire).
func TestFalReceivesOurArtifactInline(t *testing.T) {
	t.Parallel()
	fal := falfake.NewServer(falfake.Config{})
	t.Cleanup(fal.Close)
	e := start(t, "sqlite", func(c *config.Config) {
		c.Executors = map[string]config.ExecutorEntry{
			"mock": {Type: "mock"},
			"flux": {Type: "fal", Settings: json.RawMessage(fmt.Sprintf(`{"key": "k:s", "model": "fal-ai/flux/dev", "base_url": %q, "poll_interval": "5ms"}`, fal.URL))},
		}
	})
	first := e.must(201, "POST", "/api/v1/tasks/generation", map[string]any{"prompt": "a dress", "width": 64, "height": 64, "provider_type": "mock"})
	if done := e.waitStatus(fmt.Sprint(first["id"]), "completed", "failed"); done["status"] != "completed" {
		t.Fatalf("first task ended %v", done["status"])
	}
	res := e.must(200, "GET", fmt.Sprintf("/api/v1/tasks/%v/result", first["id"]), nil)
	art := res["result"].(map[string]any)["artifacts"].([]any)[0].(map[string]any)
	ref := fmt.Sprint(art["url"])
	if !strings.HasPrefix(ref, "http://127.0.0.1:") {
		t.Fatalf("artifact URL %q, want one on loopback", ref)
	}

	m := e.must(201, "POST", "/api/v1/tasks/generation", map[string]any{
		"prompt": "the same dress in red", "width": 64, "height": 64, "provider_type": "flux", "reference_image_url": ref,
	})
	done := e.waitStatus(fmt.Sprint(m["id"]), "completed", "failed")
	if done["status"] != "completed" {
		t.Fatalf("fal task ended %v: %v", done["status"], done["error_message"])
	}
	subs := fal.Submissions()
	if len(subs) != 1 {
		t.Fatalf("%d submissions to fal", len(subs))
	}
	var in map[string]any
	if err := json.Unmarshal(subs[0].Input, &in); err != nil {
		t.Fatal(err)
	}
	if img, _ := in["image_url"].(string); !strings.HasPrefix(img, "data:image/png;base64,") {
		t.Errorf("fal got image_url %.80q, want our artifact as a data URI", in["image_url"])
	}
	res = e.must(200, "GET", fmt.Sprintf("/api/v1/tasks/%v/result", m["id"]), nil)
	arts, _ := res["result"].(map[string]any)["artifacts"].([]any)
	if len(arts) != 1 || !strings.Contains(fmt.Sprint(arts[0].(map[string]any)["key"]), "output-0.png") {
		t.Errorf("artifacts %v, want fal's image stored as output-0.png", arts)
	}
}
