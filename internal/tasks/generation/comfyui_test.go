package generation_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/computeserver/compute/internal/executor/comfyui/comfyfake"
	"github.com/computeserver/compute/internal/executors"
	"github.com/computeserver/compute/internal/tasks/generation"
	"github.com/computeserver/compute/internal/testutil/fakeruntime"
)

// TestProcessOnComfyUI runs a generation task on a comfyui executor built
// from config entries (workflows relative to the config's directory)
// against the fake server: the type's default template is filled, the
// image lands among the artifacts, and the original's ComfyUI fields are
// kept.
func TestProcessOnComfyUI(t *testing.T) {
	t.Parallel()
	fake := comfyfake.StartT(t, comfyfake.Options{})
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "wf"), 0o755); err != nil {
		t.Fatal(err)
	}
	graph := `{"1": {"class_type": "EmptyImage", "inputs": {"width": "{{width}}", "height": "{{height}}", "batch_size": 1, "color": 255}},
	           "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "{{prompt}}"}}}`
	if err := os.WriteFile(filepath.Join(dir, "wf", "txt2img.json"), []byte(graph), 0o644); err != nil {
		t.Fatal(err)
	}
	settings, err := json.Marshal(map[string]any{
		"servers":   []map[string]any{{"url": fake.URL(), "slots": 1}},
		"workflows": "wf", "defaults": map[string]string{"generation": "txt2img"}, "poll_interval": "50ms",
	})
	if err != nil {
		t.Fatal(err)
	}
	set, err := executors.Build(map[string]executors.Entry{"gpu": {Type: "comfyui", Settings: settings, Dir: dir}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := valid()
	f.Prompt = "dress"
	job, rt := fakeruntime.NewJob(t, generation.Name, "gpu", f)
	res, err := generation.Type(generation.Config{Executors: set}).Processor.Process(context.Background(), job)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Artifacts) != 1 || res.Artifacts[0].Width != 128 || res.Artifacts[0].Height != 64 {
		t.Fatalf("artifacts %+v, want one 128x64 image", res.Artifacts)
	}
	if f.ComfyPromptID == nil || fake.Stats().Submissions[*f.ComfyPromptID] != 1 {
		t.Errorf("comfy_prompt_id %v is not the prompt the server ran (%v)", f.ComfyPromptID, fake.Stats().Submissions)
	}
	if f.ComfyServerURL == nil || *f.ComfyServerURL != fake.URL() || len(f.ComfyUIRetryServerURLs) != 0 {
		t.Errorf("comfy_server_url %v, retry servers %v", f.ComfyServerURL, f.ComfyUIRetryServerURLs)
	}
	if inputs, _ := f.ComfyWorkflowData["2"].(map[string]any)["inputs"].(map[string]any); inputs["filename_prefix"] != "dress" {
		t.Errorf("comfy_workflow_data %v, want the filled graph", f.ComfyWorkflowData)
	}
	if err := rt.CheckProgress(); err != nil {
		t.Error(err)
	}
}
