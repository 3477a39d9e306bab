package executors_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/computeserver/compute/internal/executor"
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
			`executors.gpu (line 3): settings: json: unknown field "slotz"`},
		{"bad setting", map[string]executors.Entry{"gpu": {Type: "mock", Settings: json.RawMessage(`{"step_delay":"soon"}`)}}, nil,
			`executors.gpu: step_delay "soon"`},
		{"planned type", map[string]executors.Entry{"gpu": {Type: "fal"}}, nil,
			`executors.gpu: executor type "fal" is not in this build yet`},
		{"comfyui without servers", map[string]executors.Entry{"gpu": {Type: "comfyui", Settings: json.RawMessage(`{"workflows":"wf"}`)}}, nil,
			`executors.gpu: servers: at least one server is required`},
		{"unknown type", map[string]executors.Entry{"gpu": {Type: "tpu"}}, nil,
			`executors.gpu: unknown executor type "tpu"`},
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
