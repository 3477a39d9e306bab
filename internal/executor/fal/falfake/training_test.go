package falfake_test

import (
	"encoding/binary"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/computeserver/compute/internal/executor/fal/falfake"
)

// TestTrainingModel: fal-ai/flux-lora-fast-training answers §2.5's output,
// diffusers_lora_file and config_file as Files the fake serves, and
// refuses a request without images_data_url with the 422 of §2.2 at the
// result of a COMPLETED request.
func TestTrainingModel(t *testing.T) {
	t.Parallel()
	s := start(t, falfake.Config{Keys: []string{key}})
	sub := submit(t, s, falfake.TrainingModel, `{"images_data_url": "https://example.com/set.zip", "steps": 100, "trigger_word": "TOK"}`)
	id := sub["request_id"].(string)
	wait(t, s, id, falfake.StatusCompleted)
	c := do(t, http.MethodGet, sub["response_url"].(string), key, "")
	if c.Code != http.StatusOK {
		t.Fatalf("result: %d %s", c.Code, c.Body)
	}
	var out map[string]struct {
		URL         string `json:"url"`
		ContentType string `json:"content_type"`
		FileName    string `json:"file_name"`
		FileSize    int    `json:"file_size"`
	}
	if err := json.Unmarshal(c.Body, &out); err != nil {
		t.Fatalf("result %s: %v", c.Body, err)
	}
	w, cfg := out["diffusers_lora_file"], out["config_file"]
	if !strings.HasSuffix(w.URL, ".safetensors") || w.FileName != "pytorch_lora_weights.safetensors" || !strings.HasSuffix(cfg.URL, ".json") {
		t.Fatalf("output %s", c.Body)
	}
	weights := do(t, http.MethodGet, w.URL, "", "")
	if weights.Code != http.StatusOK || len(weights.Body) != w.FileSize {
		t.Fatalf("weights: %d, %d bytes, want %d", weights.Code, len(weights.Body), w.FileSize)
	}
	if n := binary.LittleEndian.Uint64(weights.Body[:8]); !json.Valid(weights.Body[8 : 8+n]) {
		t.Errorf("the weights' header is not JSON: %q", weights.Body)
	}
	if got := do(t, http.MethodGet, cfg.URL, "", ""); got.Code != http.StatusOK || !strings.Contains(string(got.Body), `"trigger_word":"TOK"`) {
		t.Errorf("config: %d %s", got.Code, got.Body)
	}

	bad := submit(t, s, falfake.TrainingModel, `{"steps": 100}`)
	wait(t, s, bad["request_id"].(string), falfake.StatusCompleted)
	c = do(t, http.MethodGet, bad["response_url"].(string), key, "")
	if c.Code != http.StatusUnprocessableEntity || !strings.Contains(string(c.Body), "images_data_url") {
		t.Errorf("no images_data_url: %d %s", c.Code, c.Body)
	}
}
