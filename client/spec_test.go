package client

import (
	"encoding/json"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestTypesMatchTheSpec checks the client's hand-written types against the
// OpenAPI document the test server serves: every JSON field of a type is a
// property of its schema, and every property of the schema is a field
// (for Task, the properties every type's public schema has; the others
// are the type's own, in Task.Fields). A server change that adds, renames
// or drops a field fails here.
func TestTypesMatchTheSpec(t *testing.T) {
	t.Parallel()
	res, err := http.Get(os.Getenv("COMPUTE_URL") + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.NewDecoder(res.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	schemas := doc.Components.Schemas
	props := func(name string) []string {
		s, ok := schemas[name]
		if !ok {
			t.Fatalf("the document has no schema %s", name)
		}
		var out []string
		for k := range s.Properties {
			out = append(out, k)
		}
		return out
	}
	// common is the properties of every schema named <Type>Task<suffix>.
	common := func(suffix string) []string {
		var out []string
		n := 0
		for name := range schemas {
			if !strings.HasSuffix(name, "Task"+suffix) || name == "Task"+suffix { // the union itself
				continue
			}
			ps := props(name)
			if n == 0 {
				out = ps
			} else {
				out = slices.DeleteFunc(out, func(p string) bool { return !slices.Contains(ps, p) })
			}
			n++
		}
		if n < 5 {
			t.Fatalf("only %d schemas named *Task%s", n, suffix)
		}
		return out
	}
	full := TaskCreate{Type: "echo", Fields: map[string]any{}, ProviderType: "p", QueueName: "q", Priority: 1, RunAt: time.Now(),
		MaxAttempts: 1, TimeoutSeconds: 1, StartTimeoutSeconds: 1, WebhookURL: "u", WebhookEvents: []string{"completed"},
		EntityID: "e", OriginTenantID: "t", OriginInstance: "i", OriginZone: "z"}
	createBody, err := full.body()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		fields []string
		schema []string
	}{
		{"Task", jsonNames[Task](), common("Public")},
		{"TaskCreate", keys(createBody), common("Create")},
		{"TaskError", jsonNames[TaskError](), props("TaskError")},
		{"Usage", jsonNames[Usage](), props("Usage")},
		{"Result", jsonNames[Result](), props("TaskResult")},
		{"Artifact", jsonNames[Artifact](), props("TaskArtifact")},
		{"Output", jsonNames[Output](), props("Output")},
		{"OutputImage", jsonNames[OutputImage](), props("OutputImage")},
		{"TaskResult", jsonNames[TaskResult](), props("ResultBody")},
		{"Event", jsonNames[Event](), props("EventBody")},
		{"Problem", jsonNames[Problem](), props("ErrorModel")},
		{"ProblemError", jsonNames[ProblemError](), props("ErrorDetail")},
		{"Workflow", jsonNames[Workflow](), props("WorkflowView")},
		{"WorkflowStepState", jsonNames[WorkflowStepState](), props("WorkflowStepView")},
		{"WorkflowCreate", jsonNames[WorkflowCreate](), props("WorkflowCreateBody")},
		{"WorkflowStep", jsonNames[WorkflowStep](), props("WorkflowStepIn")},
		{"WorkflowPage", jsonNames[WorkflowPage](), props("WorkflowListBody")},
		{"WorkflowCleanup", jsonNames[WorkflowCleanup](), props("WorkflowCleanupBody")},
	}
	for _, tt := range tests {
		slices.Sort(tt.fields)
		slices.Sort(tt.schema)
		if !slices.Equal(tt.fields, tt.schema) {
			t.Errorf("%s has fields %v,\nthe document's schema %v", tt.name, tt.fields, tt.schema)
		}
	}
}

// jsonNames are the JSON names of T's fields.
func jsonNames[T any]() []string {
	var out []string
	rt := reflect.TypeFor[T]()
	for i := range rt.NumField() {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
