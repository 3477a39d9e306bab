package executors_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/cog"
	"github.com/computeserver/compute/internal/executors"
)

func TestDefault(t *testing.T) {
	t.Parallel()
	set := executors.Default()
	if got := strings.Join(set.Names(), ","); got != "local,mock" {
		t.Errorf("default executors %s, want local,mock", got)
	}
	if set.Kind("mock") != "mock" || set.Kind("local") != "local" {
		t.Errorf("kinds: mock %q, local %q", set.Kind("mock"), set.Kind("local"))
	}
}

func TestBuild(t *testing.T) {
	t.Parallel()
	set, err := executors.Build(map[string]executors.Entry{
		"gpu":  {Type: "mock", Settings: json.RawMessage(`{"slots":1,"step_delay":"10ms"}`)},
		"fast": {Type: "mock"},
	}, map[string]executor.Route{"generation": {Executor: "gpu", Fallback: []string{"fast"}}})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := set.Resolve("generation", []string{"mock"}, "mock", ""); got != "gpu" {
		t.Errorf("the route gives %q, want gpu", got)
	}
	tests := []struct {
		name    string
		entries map[string]executors.Entry
		routes  map[string]executor.Route
		want    string
	}{
		{"unknown settings key", map[string]executors.Entry{"gpu": {Type: "mock", Settings: json.RawMessage(`{"slotz":1}`), Where: "line 3"}}, nil,
			`executors.gpu (line 3): unknown setting "slotz" (known: batch, concurrency, max_side, slots, starts_per_minute, step_delay)`},
		{"bad setting", map[string]executors.Entry{"gpu": {Type: "mock", Settings: json.RawMessage(`{"step_delay":"soon"}`)}}, nil,
			`executors.gpu: step_delay "soon"`},
		{"comfyui without servers", map[string]executors.Entry{"gpu": {Type: "comfyui", Settings: json.RawMessage(`{"workflows":"wf"}`)}}, nil,
			`executors.gpu: servers: at least one server is required`},
		{"unknown type", map[string]executors.Entry{"gpu": {Type: "tpu"}}, nil,
			`executors.gpu: unknown executor type "tpu"`},
		{"unknown batch key", map[string]executors.Entry{"gpu": {Type: "mock", Settings: json.RawMessage(`{"batch":{"max_size":2,"size":3}}`)}}, nil,
			`executors.gpu: batch: unknown setting "size" (known: max_size, max_wait)`},
		{"batch size zero", map[string]executors.Entry{"gpu": {Type: "comfyui", Settings: json.RawMessage(`{"batch":{"max_size":0}}`)}}, nil,
			`executors.gpu: batch.max_size: want 1 to 64, got 0`},
		{"batch too large", map[string]executors.Entry{"gpu": {Type: "comfyui", Settings: json.RawMessage(`{"batch":{"max_size":65}}`)}}, nil,
			`executors.gpu: batch.max_size: want 1 to 64, got 65`},
		{"batch without a size", map[string]executors.Entry{"gpu": {Type: "comfyui", Settings: json.RawMessage(`{"batch":{"max_wait":"1s"}}`)}}, nil,
			`executors.gpu: batch.max_size: required`},
		{"batch wait too long", map[string]executors.Entry{"gpu": {Type: "comfyui", Settings: json.RawMessage(`{"batch":{"max_size":4,"max_wait":"2m"}}`)}}, nil,
			`executors.gpu: batch.max_wait: want 0s to 1m0s, got 2m0s`},
		{"batch wait not a duration", map[string]executors.Entry{"gpu": {Type: "comfyui", Settings: json.RawMessage(`{"batch":{"max_size":4,"max_wait":"soon"}}`)}}, nil,
			`executors.gpu: batch.max_wait "soon": want a duration`},
		{"batch not a mapping", map[string]executors.Entry{"gpu": {Type: "comfyui", Settings: json.RawMessage(`{"batch":4}`)}}, nil,
			`executors.gpu: batch: want a mapping {max_size, max_wait}, got 4`},
		{"batch size not a number", map[string]executors.Entry{"gpu": {Type: "comfyui", Settings: json.RawMessage(`{"batch":{"max_size":"four"}}`)}}, nil,
			`executors.gpu: batch.max_size: want 1 to 64, got "four"`},
		{"batch wait a number", map[string]executors.Entry{"gpu": {Type: "comfyui", Settings: json.RawMessage(`{"batch":{"max_size":4,"max_wait":500}}`)}}, nil,
			`executors.gpu: batch.max_wait: want a duration like "500ms" (0s to 1m0s), got 500`},
		{"batch wait zero", map[string]executors.Entry{"gpu": {Type: "comfyui", Settings: json.RawMessage(`{"batch":{"max_size":4,"max_wait":"0s"}}`)}}, nil,
			`executors.gpu: batch.max_wait: want more than 0s when max_size is 4`},
		{"batch on an executor that cannot", map[string]executors.Entry{"gpu": {Type: "mock", Settings: json.RawMessage(`{"batch":{"max_size":4}}`)}}, nil,
			`executors.gpu: executor "gpu": batch: executors of type mock cannot batch`},
		{"route to nothing", map[string]executors.Entry{"gpu": {Type: "mock"}}, map[string]executor.Route{"generation": {Executor: "fal"}},
			`types.generation: executor "fal" is not configured (configured: gpu)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := executors.Build(tt.entries, tt.routes)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestHostedTypes: fal, Replicate and Cog are built from their settings
// (embedded common settings decoded strictly too), and refused with the
// setting that is wrong.
func TestHostedTypes(t *testing.T) {
	t.Parallel()
	deps := executors.Deps{Callbacks: cog.NewCallbacks(), PublicURL: "https://compute.example.com"}
	set, err := executors.BuildWith(map[string]executors.Entry{
		"flux":  {Type: "fal", Settings: json.RawMessage(`{"key":"k:s","model":"fal-ai/flux/dev","models":{"training":"fal-ai/flux-lora-fast-training"},"input":{"output_format":"png"},"poll_interval":"1s"}`)},
		"sdxl":  {Type: "replicate", Settings: json.RawMessage(`{"token":"r8_x","model":"stability-ai/sdxl:5599ed30703defd1d160a25a63321b4dec97101d98b4674bcc56e41f62f35637"}`)},
		"gpu-3": {Type: "cog", Settings: json.RawMessage(`{"url":"http://gpu-3:5000","callback_timeout":"2m","inline_input_max_bytes":1048576}`)},
		"gpt":   {Type: "openai", Settings: json.RawMessage(`{"key":"sk-x","model":"gpt-4.1-mini","models":{"generation":"gpt-image-1"},"stream":false,"max_tokens_param":"max_completion_tokens","image_input":{"quality":"high"}}`)},
		"vllm":  {Type: "openai", Settings: json.RawMessage(`{"base_url":"http://vllm:8000/v1","model":"Qwen/Qwen3-8B"}`)},
		"nano":  {Type: "gemini", Settings: json.RawMessage(`{"key":"AIza-x","model":"gemini-2.5-flash-image","generation_config":{"temperature":0.2}}`)},
		"vtx":   {Type: "gemini", Settings: json.RawMessage(`{"project":"p","location":"europe-west4","token":"ya29.x","model":"gemini-2.5-flash"}`)},
	}, nil, deps)
	if err != nil {
		t.Fatal(err)
	}
	for name, kind := range map[string]string{"flux": "fal", "sdxl": "replicate", "gpu-3": "cog", "gpt": "openai", "vllm": "openai", "nano": "gemini", "vtx": "gemini"} {
		if set.Kind(name) != kind {
			t.Errorf("%s is of kind %q, want %s", name, set.Kind(name), kind)
		}
	}
	tests := []struct {
		name  string
		entry executors.Entry
		deps  executors.Deps
		want  string
	}{
		{"fal without key", executors.Entry{Type: "fal", Settings: json.RawMessage(`{"model":"fal-ai/flux/dev"}`)}, deps, "key is required"},
		{"fal without model", executors.Entry{Type: "fal", Settings: json.RawMessage(`{"key":"k"}`)}, deps, "model (or models per task type) is required"},
		{"fal unknown key", executors.Entry{Type: "fal", Settings: json.RawMessage(`{"key":"k","model":"m","poll":"1s"}`)}, deps, `unknown setting "poll"`},
		{"fal bad poll", executors.Entry{Type: "fal", Settings: json.RawMessage(`{"key":"k","model":"m","poll_max":"often"}`)}, deps, `poll_max "often"`},
		{"replicate bad model", executors.Entry{Type: "replicate", Settings: json.RawMessage(`{"token":"t","model":"flux"}`)}, deps, `model "flux": want owner/name`},
		{"openai without model", executors.Entry{Type: "openai", Settings: json.RawMessage(`{"key":"k"}`)}, deps, "model (or models per task type) is required"},
		{"openai bad max_tokens_param", executors.Entry{Type: "openai", Settings: json.RawMessage(`{"model":"m","max_tokens_param":"tokens"}`)}, deps, `max_tokens_param "tokens"`},
		{"openai unknown key", executors.Entry{Type: "openai", Settings: json.RawMessage(`{"model":"m","input":{}}`)}, deps, `unknown setting "input"`},
		{"gemini without key", executors.Entry{Type: "gemini", Settings: json.RawMessage(`{"model":"m"}`)}, deps, "key is required"},
		{"vertex without token", executors.Entry{Type: "gemini", Settings: json.RawMessage(`{"model":"m","project":"p"}`)}, deps, "needs token or token_file"},
		{"cog without url", executors.Entry{Type: "cog"}, deps, "url (the container's base URL) is required"},
		{"cog without callbacks", executors.Entry{Type: "cog", Settings: json.RawMessage(`{"url":"http://gpu:5000"}`)}, executors.Deps{}, "receives no callbacks"},
		{"cog without a callback URL", executors.Entry{Type: "cog", Settings: json.RawMessage(`{"url":"http://gpu:5000"}`)}, executors.Deps{Callbacks: cog.NewCallbacks()}, "callback_url is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := executors.BuildWith(map[string]executors.Entry{"x": tt.entry}, nil, tt.deps)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "executors.x") {
				t.Errorf("err %v, want it to name executors.x and contain %q", err, tt.want)
			}
		})
	}
}

// TestCommandType: a command executor is built from its settings, keeps
// its state under the process's data directory, and is refused with the
// setting that is wrong.
func TestCommandType(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	set, err := executors.BuildWith(map[string]executors.Entry{
		"train": {Type: "command", Dir: t.TempDir(), Settings: json.RawMessage(`{"command":["./train.sh","{{steps}}"],"grace_seconds":5,"env":{"HF_TOKEN":"x"}}`)},
	}, nil, executors.Deps{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	if set.Kind("train") != "command" {
		t.Errorf("train is of kind %q", set.Kind("train"))
	}
	if _, err := os.Stat(filepath.Join(data, "command", "train", "groups")); err != nil {
		t.Errorf("the state directory is not under the data directory: %v", err)
	}
	for _, tt := range []struct{ name, settings, want string }{
		{"no command", `{}`, "command is required"},
		{"bad mode", `{"command":["x"],"mode":"daemon"}`, "mode must be"},
		{"unknown key", `{"command":["x"],"args":[]}`, `unknown setting "args"`},
	} {
		_, err := executors.BuildWith(map[string]executors.Entry{"x": {Type: "command", Settings: json.RawMessage(tt.settings)}}, nil, executors.Deps{DataDir: data})
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "executors.x") {
			t.Errorf("%s: err %v, want it to name executors.x and contain %q", tt.name, err, tt.want)
		}
	}
}

// TestBatchConcurrency: a comfyui executor that batches claims max_size
// tasks per server slot unless its concurrency says otherwise.
func TestBatchConcurrency(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, extra string
		want        int
		batch       executor.Batching
	}{
		{"no batching: the slots", ``, 3, executor.Batching{}},
		{"slots times max_size", `,"batch":{"max_size":4,"max_wait":"750ms"}`, 12, executor.Batching{MaxSize: 4, MaxWait: 750 * time.Millisecond}},
		{"an explicit concurrency", `,"batch":{"max_size":4},"concurrency":5`, 5, executor.Batching{MaxSize: 4, MaxWait: executor.DefaultBatchWait}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			settings := `{"servers":[{"url":"http://127.0.0.1:1","slots":2},{"url":"http://127.0.0.1:2"}],"workflows":"../executor/comfyui/testdata/workflows"` + tt.extra + `}`
			set, err := executors.Build(map[string]executors.Entry{"gpu": {Type: "comfyui", Settings: json.RawMessage(settings)}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if l := set.LimitsOf("gpu"); l.Concurrency != tt.want || l.Batch != tt.batch {
				t.Errorf("limits %+v, want concurrency %d, batch %+v", l, tt.want, tt.batch)
			}
		})
	}
}
