package registry_test

import (
	"strings"
	"testing"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
)

func TestExamplesAreValidated(t *testing.T) {
	t.Parallel()
	ok := registry.Example{Name: "ok", Body: map[string]any{"label": "x"}, WantStatus: task.StatusCompleted}
	tests := []struct {
		name     string
		examples []registry.Example
		want     string // "" means valid
	}{
		{name: "none", examples: nil},
		{name: "valid", examples: []registry.Example{ok, {Name: "no", WantStatus: task.StatusFailed, WantError: "boom",
			Inputs: []registry.ExampleInput{{Key: "examples/plain/in.txt", Data: []byte("x")}}}}},
		{name: "no name", examples: []registry.Example{{WantStatus: task.StatusCompleted}}, want: "example 0 has no name"},
		{name: "twice", examples: []registry.Example{ok, ok}, want: `example "ok" is declared twice`},
		{name: "not terminal", examples: []registry.Example{{Name: "p", WantStatus: task.StatusPending}},
			want: `example "p": WantStatus is "pending", want "completed" or "failed"`},
		{name: "error on success", examples: []registry.Example{{Name: "e", WantStatus: task.StatusCompleted, WantError: "x"}},
			want: `example "e": WantError is only meaningful with WantStatus "failed"`},
		{name: "other type", examples: []registry.Example{{Name: "o", Body: map[string]any{"task_type": "echo"}, WantStatus: task.StatusCompleted}},
			want: `example "o": body names task_type echo`},
		{name: "input outside examples/", examples: []registry.Example{{Name: "i", WantStatus: task.StatusCompleted,
			Inputs: []registry.ExampleInput{{Key: "tasks/x/in.png"}}}}, want: `example "i": input key "tasks/x/in.png" must start with "examples/"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ty := registry.Type[plainFields, struct{}]{Name: "plain", Processor: plainProcessor(), Migrations: migrations, Examples: tt.examples}
			def, err := ty.Declare()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(def.Examples) != len(tt.examples) {
					t.Errorf("definition has %d examples, want %d", len(def.Examples), len(tt.examples))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), `task type "plain": `+tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}
