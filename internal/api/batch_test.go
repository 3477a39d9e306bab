package api_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/executor/comfyui/comfyfake"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// batchTemplate is a batchable txt2img template: the executor fills
// {{batch_size}}; the seed names the files, so two batches' graphs differ
// (the fake, like ComfyUI, serves an identical graph from its cache).
const batchTemplate = `{
  "1": {"class_type": "EmptyImage", "inputs": {"width": "{{width}}", "height": "{{height}}", "batch_size": "{{batch_size}}", "color": 65280}},
  "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "{{seed}}"}}
}`

// batchWorkflows writes the workflows directory of batchTemplate under
// dir and returns the executor's settings over the fake at url.
func batchWorkflows(t *testing.T, dir, url, batch string) json.RawMessage {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "workflows"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "workflows", "txt2img.json"), []byte(batchTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	return json.RawMessage(fmt.Sprintf(`{"servers": [{"url": %q, "slots": 1}], "workflows": "workflows",
		"defaults": {"generation": "txt2img"}, "poll_interval": "50ms", "batch": %s}`, url, batch))
}

// TestBatchedGeneration (issue #13): eight generation tasks with the same
// parameters and no seed, on a comfyui executor with one slot that
// batches up to four, reach the server as two prompts; each task completes
// with its own image and its place in its batch.
func TestBatchedGeneration(t *testing.T) {
	t.Parallel()
	for _, d := range testdb.Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			fake := comfyfake.StartT(t, comfyfake.Options{})
			dir := t.TempDir()
			// The second batch forms while the first one's tasks end and
			// free the executor's concurrency (slots × max_size = 4); on a
			// loaded machine (-race, load 15 on 2 CPUs) their ends spread
			// over more than a second, so max_wait is 5s, not the 1s of a
			// real deployment. Full batches start at once either way.
			settings := batchWorkflows(t, dir, fake.URL(), `{"max_size": 4, "max_wait": "5s"}`)
			e := start(t, d, func(c *config.Config) {
				c.Executors = map[string]config.ExecutorEntry{"gpu": {Type: "comfyui", Settings: settings, Dir: dir}}
				c.Workers = 8
			})
			var ids []string
			for range 8 {
				m := e.must(201, "POST", "/api/v1/tasks/generation", map[string]any{"prompt": "a linen dress", "width": 64, "height": 64})
				ids = append(ids, fmt.Sprint(m["id"]))
			}
			images := map[string]string{}
			places := map[string]int{}
			for _, id := range ids {
				done := e.waitStatus(id, "completed", "failed", "cancelled")
				if done["status"] != "completed" {
					t.Fatalf("task %s ended %v: %v", id, done["status"], done["error_message"])
				}
				res := e.must(200, "GET", "/api/v1/tasks/"+id+"/result", nil)
				result, _ := res["result"].(map[string]any)
				arts, _ := result["artifacts"].([]any)
				data, _ := result["data"].(map[string]any)
				if len(arts) != 1 || data["batch_size"] != float64(4) || data["batch_index"] == nil {
					t.Fatalf("task %s: artifacts %v, data %v; want one image, its place in a batch of 4", id, arts, data)
				}
				path, _ := done["result_image_path"].(string)
				if other, dup := images[path]; dup || path == "" {
					t.Errorf("tasks %s and %s share the image %q", other, id, path)
				}
				images[path] = id
				places[fmt.Sprint(done["comfy_prompt_id"], "/", data["batch_index"])]++
			}
			st := fake.Stats()
			if len(st.Submissions) != 2 {
				t.Errorf("the server received %d prompts, want 2 (8 tasks in batches of 4): %v", len(st.Submissions), st.Submissions)
			}
			if len(places) != 8 {
				t.Errorf("places %v, want 8 distinct (prompt, batch_index)", places)
			}
		})
	}
}
