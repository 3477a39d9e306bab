package api_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/executor/comfyui/comfyfake"
)

// A generation task on a comfyui executor (against the fake server): a
// template field the task lacks, or a template that does not exist, is a
// 422 at create naming the field; a complete task runs to completion with
// its image among the artifacts and the original's ComfyUI fields filled.
func TestCreateOnComfyUI(t *testing.T) {
	t.Parallel()
	fake := comfyfake.StartT(t, comfyfake.Options{})
	dir := t.TempDir()
	templates := map[string]string{
		"txt2img": `{"1": {"class_type": "EmptyImage", "inputs": {"width": "{{width}}", "height": "{{height}}", "batch_size": 1, "color": 65280}},
		             "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "{{prompt}}"}}}`,
		"ref": `{"1": {"class_type": "LoadImage", "inputs": {"image": "{{input:reference_image_url}}"}},
		         "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "ref"}}}`,
	}
	if err := os.Mkdir(filepath.Join(dir, "workflows"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, g := range templates {
		if err := os.WriteFile(filepath.Join(dir, "workflows", name+".json"), []byte(g), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	settings := fmt.Sprintf(`{"servers": [{"url": %q, "slots": 1}], "workflows": "workflows",
		"defaults": {"generation": "txt2img"}, "poll_interval": "50ms"}`, fake.URL())
	e := start(t, "sqlite", func(c *config.Config) {
		c.Executors = map[string]config.ExecutorEntry{"gpu": {Type: "comfyui", Settings: json.RawMessage(settings), Dir: dir}}
	})

	r := e.do("POST", "/api/v1/tasks/generation", map[string]any{"prompt": "a dress", "comfy_workflow": "ref"})
	if got := problemDetail(t, r, "body.reference_image_url"); !strings.Contains(got, "workflow ref needs field(s) the task lacks: reference_image_url") {
		t.Errorf("a missing template field: %q", got)
	}
	r = e.do("POST", "/api/v1/tasks/generation", map[string]any{"prompt": "a dress", "comfy_workflow": "flux"})
	if got := problemDetail(t, r, "body.comfy_workflow"); !strings.Contains(got, `unknown workflow "flux"`) {
		t.Errorf("an unknown template: %q", got)
	}
	if n := len(fake.Stats().Submissions); n != 0 {
		t.Errorf("%d prompts reached the server from refused creates", n)
	}

	m := e.must(201, "POST", "/api/v1/tasks/generation", map[string]any{"prompt": "dress", "width": 64, "height": 96})
	if m["provider_type"] != "gpu" {
		t.Fatalf("provider_type %v, want gpu (the only executor generation can use)", m["provider_type"])
	}
	done := e.waitStatus(fmt.Sprint(m["id"]), "completed", "failed")
	if done["status"] != "completed" {
		t.Fatalf("task ended %v: %v", done["status"], done["error_message"])
	}
	if done["comfy_server_url"] != fake.URL() || done["comfy_prompt_id"] == nil || done["comfy_workflow_data"] == nil {
		t.Errorf("comfy fields: server %v, prompt %v, data %v", done["comfy_server_url"], done["comfy_prompt_id"], done["comfy_workflow_data"])
	}
	if p, _ := done["result_image_path"].(string); !strings.HasSuffix(p, "/dress_00001_.png") {
		t.Errorf("result_image_path %v, want the server's file name", done["result_image_path"])
	}
}
