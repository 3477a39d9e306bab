package generation

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

// Scheduler checks a new task against its executor at create: a task bound
// for a comfyui executor must name a workflow template that exists and
// carry every field the template's placeholders need, else the create is
// a 422 naming the field.
type Scheduler struct {
	executors *executor.Set
}

var _ registry.SchedulerOf[Fields] = (*Scheduler)(nil)

// fieldChecker is the create-time check comfyui executors offer.
type fieldChecker interface {
	CheckFields(taskType string, fields json.RawMessage) error
}

// Schedule implements registry.SchedulerOf. It changes nothing.
func (s *Scheduler) Schedule(_ context.Context, t *task.Task, f *Fields) error {
	ex, ok := s.executors.Lookup(t.ProviderType)
	if !ok {
		return nil
	}
	fc, ok := ex.(fieldChecker)
	if !ok {
		return nil
	}
	check := *f
	if check.Seed == nil {
		// The processor derives the seed of a task that names none.
		seed := DeriveSeed(t.ID)
		check.Seed = &seed
	}
	raw, err := json.Marshal(&check)
	if err != nil {
		return fmt.Errorf("encoding fields for the executor check: %w", err)
	}
	err = fc.CheckFields(t.Type, raw)
	var missing *comfyui.MissingFieldsError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &missing):
		return &registry.FieldError{Field: missing.Fields[0], Message: fmt.Sprintf("executor %s: %s", ex.Name(), missing)}
	}
	// An unknown template, or an input field that is no URL.
	return &registry.FieldError{Field: "comfy_workflow", Message: fmt.Sprintf("executor %s: %s", ex.Name(), message(err))}
}

// message is an executor error's message without its category prefix.
func message(err error) string {
	var e *executor.Error
	if errors.As(err, &e) {
		return e.Err.Error()
	}
	return err.Error()
}

// keepComfyFields makes the job keep the original's ComfyUI fields
// (comfy_prompt_id, comfy_server_url, comfyui_retry_server_urls) up to
// date whenever a comfyui executor saves its handle: before each prompt is
// submitted, on the first server and on each one failed over to.
func (p *Processor) keepComfyFields(job *registry.Job[Fields], ej *executor.Job) {
	save := ej.SaveHandle
	ej.SaveHandle = func(ctx context.Context, h executor.Handle) error {
		if err := save(ctx, h); err != nil {
			return err
		}
		if p.executors.Kind(h.Executor) != comfyui.Kind {
			return nil
		}
		f := job.Fields
		id, server := h.ExternalID, h.Server
		f.ComfyPromptID, f.ComfyServerURL = &id, &server
		f.ComfyUIRetryServerURLs = comfyui.TriedServers(h)
		if err := job.SaveFields(ctx); err != nil {
			return fmt.Errorf("saving the ComfyUI fields: %w", err)
		}
		return nil
	}
}
