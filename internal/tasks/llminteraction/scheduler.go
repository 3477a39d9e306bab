package llminteraction

import (
	"context"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
)

// Scheduler refuses, at create, a task that would run on the mock though
// nothing chose it: a server without an openai or gemini executor answers
// 422 saying what to configure, rather than answering mock text.
type Scheduler struct {
	executors *executor.Set
	providers []string
}

var _ registry.SchedulerOf[Fields] = (*Scheduler)(nil)

// Schedule implements registry.SchedulerOf. It changes nothing.
func (s *Scheduler) Schedule(_ context.Context, t *task.Task, _ *Fields) error {
	if err := s.executors.StandIn(t.Type, s.providers, t.ProviderType, t.ProviderRequested); err != nil {
		return &registry.FieldError{Field: "provider_type", Message: err.Error()}
	}
	return nil
}
