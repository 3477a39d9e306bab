package editing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/comfyui"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
)

// Scheduler checks a new task against its executor at create: one that
// would run on the mock though nothing chose it is refused, saying what
// to configure; one bound for a comfyui executor must name a workflow that
// exists and carry every field its placeholders need (a reference image
// the template loads, say).
type Scheduler struct {
	executors *executor.Set
	providers []string
}

var _ registry.SchedulerOf[Fields] = (*Scheduler)(nil)

// fieldChecker is the create-time check comfyui executors offer.
type fieldChecker interface {
	CheckFields(taskType string, fields json.RawMessage) error
}

// Schedule implements registry.SchedulerOf. It changes nothing.
func (s *Scheduler) Schedule(_ context.Context, t *task.Task, f *Fields) error {
	if err := s.executors.StandIn(t.Type, s.providers, t.ProviderType, t.ProviderRequested); err != nil {
		return &registry.FieldError{Field: "provider_type", Message: err.Error()}
	}
	ex, ok := s.executors.Lookup(t.ProviderType)
	if !ok {
		return nil
	}
	fc, ok := ex.(fieldChecker)
	if !ok {
		return nil
	}
	raw, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("encoding fields for the executor check: %w", err)
	}
	err = fc.CheckFields(t.Type, raw)
	var missing *comfyui.MissingFieldsError
	var ee *executor.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &missing):
		return &registry.FieldError{Field: missing.Fields[0], Message: fmt.Sprintf("executor %s: %s", ex.Name(), missing)}
	case errors.As(err, &ee):
		err = ee.Err
	}
	return &registry.FieldError{Field: "comfy_workflow", Message: fmt.Sprintf("executor %s: %v", ex.Name(), err)}
}
