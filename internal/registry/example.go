package registry

import (
	"fmt"
	"strings"

	"github.com/computeserver/compute/internal/task"
)

// Example is one sample task of a type. The conformance suite
// (internal/conformance) runs every example of every registered type
// through a real server on SQLite and PostgreSQL: it creates the task with
// Body, reads it back, and waits for it to reach WantStatus. Every type
// declares at least one example that completes and one that fails, so both
// paths of its processor run in the suite.
type Example struct {
	// Name says what the example shows ("a small image", "an input that
	// is not an image").
	Name string
	// Body is the create request's JSON object, without task_type. Values
	// are JSON values: strings, float64 or int numbers, bools, []any,
	// map[string]any.
	Body map[string]any
	// WantStatus is the terminal status the task must reach:
	// task.StatusCompleted or task.StatusFailed.
	WantStatus task.Status
	// WantError, when set, must be part of the failed task's
	// error_message.
	WantError string
	// Inputs are files the suite puts in the artifact store before it
	// creates the task; Body refers to one as "/api/v1/artifacts/" + Key.
	Inputs []ExampleInput
}

// ExampleInput is a file an Example reads from the artifact store.
type ExampleInput struct {
	// Key is the artifact key, e.g. "examples/image_adjuster/sample.png".
	// Keys under "tasks/" belong to tasks; use "examples/<type>/…".
	Key string
	// ContentType is the file's media type.
	ContentType string
	// Data is the content.
	Data []byte
}

// validateExamples checks the examples of type name: named, unique, a
// terminal status, no task_type of another type, inputs under
// "examples/".
func validateExamples(name string, examples []Example) error {
	seen := map[string]bool{}
	for i, ex := range examples {
		switch {
		case strings.TrimSpace(ex.Name) == "":
			return fmt.Errorf("example %d has no name", i)
		case seen[ex.Name]:
			return fmt.Errorf("example %q is declared twice", ex.Name)
		case ex.WantStatus != task.StatusCompleted && ex.WantStatus != task.StatusFailed:
			return fmt.Errorf("example %q: WantStatus is %q, want %q or %q", ex.Name, ex.WantStatus, task.StatusCompleted, task.StatusFailed)
		case ex.WantError != "" && ex.WantStatus != task.StatusFailed:
			return fmt.Errorf("example %q: WantError is only meaningful with WantStatus %q", ex.Name, task.StatusFailed)
		}
		seen[ex.Name] = true
		if tt, ok := ex.Body["task_type"]; ok && tt != name {
			return fmt.Errorf("example %q: body names task_type %v", ex.Name, tt)
		}
		for _, in := range ex.Inputs {
			if !strings.HasPrefix(in.Key, "examples/") {
				return fmt.Errorf("example %q: input key %q must start with \"examples/\"", ex.Name, in.Key)
			}
		}
	}
	return nil
}
