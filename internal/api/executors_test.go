package api_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/store"
)

// problemDetail returns the message of the problem's error at loc.
func problemDetail(t *testing.T, r response, loc string) string {
	t.Helper()
	problemAt(t, r, 422, loc)
	errs, _ := r.json(t)["errors"].([]any)
	for _, e := range errs {
		if em, _ := e.(map[string]any); em["location"] == loc {
			msg, _ := em["message"].(string)
			return msg
		}
	}
	return ""
}

// A provider_type that names no configured executor is refused at create,
// naming the executors that are configured for the type; before the
// executor seam such a task was accepted and failed when it ran.
func TestCreateRefusesUnconfiguredExecutor(t *testing.T) {
	t.Parallel()
	e := start(t, "sqlite", func(c *config.Config) { c.Workers = 0 })
	tests := []struct {
		name, path string
		body       map[string]any
		want       string
	}{
		{"a planned executor type", "/api/v1/tasks/generation", map[string]any{"prompt": "a dress", "provider_type": "comfyui"},
			`executor "comfyui" is not configured for generation tasks; configured: mock`},
		{"an executor of a type the task type cannot use", "/api/v1/tasks/generation", map[string]any{"prompt": "a dress", "provider_type": "local"},
			`executor "local" is not configured for generation tasks; configured: mock`},
		{"on the union route", "/api/v1/tasks/", map[string]any{"task_type": "image_adjuster", "image_url": "https://example.com/a.png", "provider_type": "mock"},
			`executor "mock" is not configured for image_adjuster tasks; configured: local`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do("POST", tt.path, tt.body)
			if got := problemDetail(t, r, "body.provider_type"); got != tt.want {
				t.Errorf("message %q, want %q", got, tt.want)
			}
		})
	}
	// The configured executor is accepted and recorded.
	m := e.must(201, "POST", "/api/v1/tasks/generation", map[string]any{"prompt": "a dress", "provider_type": "mock"})
	if m["provider_type"] != "mock" {
		t.Errorf("provider_type %v, want mock", m["provider_type"])
	}
}

// With a config file's executors, provider_type names them, a type's route
// picks the default, and GET /task-types lists what each type may name.
func TestCreateUsesConfiguredExecutors(t *testing.T) {
	t.Parallel()
	e := start(t, "sqlite", func(c *config.Config) {
		c.Executors = map[string]config.ExecutorEntry{
			"gpu":   {Type: "mock", Settings: json.RawMessage(`{"slots": 1}`)},
			"cheap": {Type: "mock"},
			"local": {Type: "local"},
		}
		c.Types = map[string]config.TypeEntry{"generation": {Executor: "gpu"}}
	})
	m := e.must(201, "POST", "/api/v1/tasks/generation", map[string]any{"prompt": "a dress", "width": 64, "height": 64})
	if m["provider_type"] != "gpu" {
		t.Fatalf("provider_type %v, want the type's configured default gpu", m["provider_type"])
	}
	done := e.waitStatus(fmt.Sprint(m["id"]), "completed", "failed")
	if done["status"] != "completed" {
		t.Fatalf("task on executor gpu ended %v: %v", done["status"], done["error_message"])
	}
	// Whether the client named the executor is kept: the type's fallbacks
	// never take over a task that named one.
	named := e.must(201, "POST", "/api/v1/tasks/generation", map[string]any{"prompt": "a dress", "provider_type": "cheap"})
	for id, want := range map[any]bool{m["id"]: false, named["id"]: true} {
		rec, err := e.app.Store.GetTask(t.Context(), uuid.MustParse(fmt.Sprint(id)), store.AdminScope)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Task.ProviderRequested != want {
			t.Errorf("task %v: provider_requested %v, want %v", id, rec.Task.ProviderRequested, want)
		}
	}
	r := e.do("POST", "/api/v1/tasks/generation", map[string]any{"prompt": "a dress", "provider_type": "mock"})
	if got := problemDetail(t, r, "body.provider_type"); !strings.HasSuffix(got, "configured: cheap, gpu") {
		t.Errorf("message %q does not name the configured executors cheap, gpu", got)
	}
	types := e.must(200, "GET", "/api/v1/task-types", nil)
	list, _ := types["types"].([]any)
	found := false
	for _, ty := range list {
		tm, _ := ty.(map[string]any)
		if tm["name"] == "generation" {
			found = true
			if fmt.Sprint(tm["providers"]) != "[cheap gpu]" || tm["default_provider"] != "gpu" {
				t.Errorf("generation lists providers %v, default %v; want [cheap gpu], gpu", tm["providers"], tm["default_provider"])
			}
		}
	}
	if !found {
		t.Error("GET /task-types has no generation type")
	}
}
