// Package echo is the smallest task type: it echoes a message after an
// optional sleep, or fails on request. It is used for smoke tests, chaos
// tests and benchmarks.
package echo

import (
	"context"
	"embed"
	"errors"
	"time"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
)

// Name is the task type name.
const Name = "echo"

// Fields are the echo type's own columns (table echo_tasks).
type Fields struct {
	Message  string `json:"message" db:"message" minLength:"1" maxLength:"65536" doc:"Text returned as the result."`
	SleepMS  int    `json:"sleep_ms" required:"false" db:"sleep_ms" minimum:"0" maximum:"60000" doc:"Milliseconds to sleep before answering."`
	FailWith string `json:"fail_with" required:"false" db:"fail_with" maxLength:"4096" doc:"When set, the task fails with this error message."`
}

// Update is the PATCH body of an echo task.
type Update struct {
	Message *string `json:"message,omitempty" minLength:"1" maxLength:"65536"`
	SleepMS *int    `json:"sleep_ms,omitempty" minimum:"0" maximum:"60000"`
}

// Output is the result data of an echo task.
type Output struct {
	Message string `json:"message"`
}

//go:embed migrations
var migrations embed.FS

// Type declares the echo task type.
func Type() registry.Type[Fields, Update] {
	return registry.Type[Fields, Update]{
		Name:        Name,
		Title:       "Echo",
		Description: "Echoes a message after an optional sleep; for smoke tests and benchmarks.",
		Processor:   Processor{},
		Migrations:  registry.Sub(migrations, "migrations"),
		MaxAttempts: 1,
		Timeout:     2 * time.Minute,
		Examples: []registry.Example{
			{Name: "echoes a message", Body: map[string]any{"message": "hello"}, WantStatus: task.StatusCompleted},
			{Name: "fails on request", Body: map[string]any{"message": "x", "fail_with": "boom"},
				WantStatus: task.StatusFailed, WantError: "boom"},
		},
	}
}

// Processor runs echo tasks.
type Processor struct{}

var _ registry.ProcessorOf[Fields] = Processor{}

// Process implements registry.ProcessorOf.
func (Processor) Process(ctx context.Context, job *registry.Job[Fields]) (*task.Result, error) {
	f := job.Fields
	if f.SleepMS > 0 {
		t := time.NewTimer(time.Duration(f.SleepMS) * time.Millisecond)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	if f.FailWith != "" {
		return nil, task.Permanent(errors.New(f.FailWith))
	}
	return &task.Result{Artifacts: []task.Artifact{}, Data: Output{Message: f.Message}}, nil
}
