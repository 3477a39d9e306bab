package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"slices"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

type patchInput struct {
	TaskID string `path:"task_id" doc:"The task id (a UUID)."`
	Body   json.RawMessage
}

type resultBody struct {
	TaskID        uuid.UUID   `json:"task_id"`
	TaskType      string      `json:"task_type"`
	Status        task.Status `json:"status"`
	Progress      float64     `json:"progress"`
	Result        resultJSON  `json:"result,omitempty" doc:"The processor's result: artifacts (with download URLs) and data; absent until the task completes."`
	ErrorMessage  string      `json:"error_message,omitempty"`
	ErrorCategory string      `json:"error_category,omitempty"`
}

type resultOutput struct {
	Body resultBody
}

func (s *Server) registerChangeRoutes() {
	tags := []string{"Tasks"}
	huma.Register(s.api, huma.Operation{
		OperationID: "update-task", Method: http.MethodPatch, Path: "/api/v1/tasks/{task_id}", Tags: tags,
		Summary: "Update a pending task",
		Description: "Accepts the base updatable fields and the fields the task's type allows to change. Only pending tasks can be updated (409 otherwise). " +
			"An absent field is left unchanged. `null` clears `webhook_url` (the server's default URL applies) and `webhook_events` (all status changes are sent); for any other field `null` is a 422.",
		Security: bearer, MaxBodyBytes: s.cfg.MaxBodyBytes,
		// Huma checks only that the body is an object; the handler validates
		// it against the schema of the task's own type, which gives precise
		// errors. The document shows the union (set below).
		RequestBody: &huma.RequestBody{Required: true, Content: jsonBody(&huma.Schema{Type: huma.TypeObject})},
		Responses:   map[string]*huma.Response{"200": {Description: "The updated task.", Content: jsonBody(s.publicUnion)}},
		Errors:      []int{400, 401, 404, 409, 413, 415, 422},
	}, s.update)
	if item := s.api.OpenAPI().Paths["/api/v1/tasks/{task_id}"]; item != nil && item.Patch != nil {
		item.Patch.RequestBody.Content = jsonBody(s.updateUnion)
	}

	huma.Register(s.api, huma.Operation{
		OperationID: "cancel-task", Method: http.MethodPost, Path: "/api/v1/tasks/{task_id}/cancel", Tags: tags,
		Summary:     "Cancel a pending or executing task",
		Description: "A pending task is cancelled at once; an executing task's processor is stopped. Terminal tasks answer 409.",
		Security:    bearer,
		Responses:   map[string]*huma.Response{"200": {Description: "The cancelled task.", Content: jsonBody(s.publicUnion)}},
		Errors:      []int{401, 404, 409},
	}, s.cancel)

	huma.Register(s.api, huma.Operation{
		OperationID: "retry-task", Method: http.MethodPost, Path: "/api/v1/tasks/{task_id}/retry", Tags: tags,
		Summary:     "Run a failed or cancelled task again",
		Description: "The task goes back to pending with a fresh attempt budget; its result and error fields are cleared and its errors list keeps the history. It is due at once: `run_at` becomes the time of the retry, also for a task that was cancelled before its scheduled `run_at` (PATCH `run_at` afterwards to schedule it again). Other statuses answer 409.",
		Security:    bearer,
		Responses:   map[string]*huma.Response{"200": {Description: "The task, pending again.", Content: jsonBody(s.publicUnion)}},
		Errors:      []int{401, 404, 409},
	}, s.retry)

	huma.Register(s.api, huma.Operation{
		OperationID: "get-task-result", Method: http.MethodGet, Path: "/api/v1/tasks/{task_id}/result", Tags: tags,
		Summary: "Get a task's outputs and artifact URLs", Security: bearer, Errors: []int{401, 404},
	}, func(ctx context.Context, in *idInput) (*resultOutput, error) {
		rec, err := s.load(ctx, in.TaskID)
		if err != nil {
			return nil, err
		}
		t := rec.Task
		return &resultOutput{Body: resultBody{
			TaskID: t.ID, TaskType: t.Type, Status: t.Status, Progress: t.Progress,
			Result: storedResult(t.Result), ErrorMessage: t.ErrorMessage, ErrorCategory: t.ErrorCategory,
		}}, nil
	})
}

func (s *Server) update(ctx context.Context, in *patchInput) (*taskOutput, error) {
	var obj map[string]any
	if err := json.Unmarshal(in.Body, &obj); err != nil || obj == nil {
		return nil, huma.Error400BadRequest("the body must be a JSON object")
	}
	rec, err := s.load(ctx, in.TaskID)
	if err != nil {
		return nil, err
	}
	ts := s.types[rec.Task.Type]
	reg := s.api.OpenAPI().Components.Schemas
	res := &huma.ValidateResult{}
	huma.Validate(reg, ts.update, huma.NewPathBuffer([]byte("body"), 4), huma.ModeWriteToServer, obj, res)
	if len(res.Errors) > 0 {
		return nil, validationError(res)
	}
	if errs := nullErrors(obj); len(errs) > 0 {
		return nil, huma.Error422UnprocessableEntity("validation failed", errs...)
	}
	var base updateBase
	if err := json.Unmarshal(in.Body, &base); err != nil {
		return nil, huma.Error422UnprocessableEntity("validation failed: " + err.Error())
	}
	clearNulls(obj, &base)
	if base.WebhookURL != nil && *base.WebhookURL != "" {
		if err := checkWebhookURL(*base.WebhookURL); err != nil {
			return nil, s.problem(err, "task")
		}
	}
	def := ts.def
	upd := reflect.New(def.Update).Interface()
	if err := json.Unmarshal(in.Body, upd); err != nil {
		return nil, huma.Error422UnprocessableEntity("validation failed: " + err.Error())
	}
	updated, err := s.deps.Store.UpdateTask(ctx, rec.Task.ID, principalFrom(ctx).scope(), store.Patch{
		Priority: base.Priority, QueueName: base.QueueName, RunAt: base.RunAt, MaxAttempts: base.MaxAttempts,
		WebhookURL: base.WebhookURL, WebhookEvents: base.WebhookEvents,
		Apply: func(fields any) ([]registry.Column, error) {
			changed := def.ApplyUpdate(fields, upd)
			if err := def.PrepareModel(fields); err != nil {
				return nil, err
			}
			return changed, nil
		},
	})
	if err != nil {
		return nil, s.problem(err, "task")
	}
	if base.RunAt != nil && s.deps.Engine != nil {
		s.deps.Engine.Notify()
	}
	return s.output(updated, http.StatusOK)
}

// clearable are the PATCH fields that null clears: a task may have no
// webhook_url of its own (the server's COMPUTE_WEBHOOK_URL applies) and
// no webhook_events (the default events apply). Every other field has no
// unset state, and null for it is a 422 (omit a field to leave it as it
// is).
var clearable = map[string]bool{"webhook_url": true, "webhook_events": true}

// nullErrors locates the fields of a PATCH body that are null but cannot
// be cleared, in name order.
func nullErrors(obj map[string]any) []error {
	var names []string
	for k, v := range obj {
		if v == nil && !clearable[k] {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	errs := make([]error, len(names))
	for i, k := range names {
		errs[i] = &huma.ErrorDetail{Location: "body." + k, Message: "cannot be null: omit the field to leave it unchanged"}
	}
	return errs
}

// clearNulls turns the clearable fields sent as null into their empty
// values, which the store writes.
func clearNulls(obj map[string]any, base *updateBase) {
	if v, ok := obj["webhook_url"]; ok && v == nil {
		none := ""
		base.WebhookURL = &none
	}
	if v, ok := obj["webhook_events"]; ok && v == nil {
		none := []string{}
		base.WebhookEvents = &none
	}
}

func (s *Server) cancel(ctx context.Context, in *idInput) (*taskOutput, error) {
	return s.transition(ctx, in.TaskID, store.StatusChange{Change: task.Change{
		To:  task.StatusCancelled,
		Err: &task.Error{Message: "cancelled by request", Category: task.CategoryCancelled},
	}}, "only pending or executing tasks can be cancelled", func(e Engine, id uuid.UUID) { e.Cancel(id) })
}

func (s *Server) retry(ctx context.Context, in *idInput) (*taskOutput, error) {
	return s.transition(ctx, in.TaskID, store.StatusChange{Change: task.Change{
		To: task.StatusPending, From: []task.Status{task.StatusFailed, task.StatusCancelled}, ResetForRetry: true,
	}}, "only failed or cancelled tasks can be retried", func(e Engine, _ uuid.UUID) { e.Notify() })
}

// transition applies a user's status change c to the task rawID names,
// within the caller's scope (a task outside it is not found), answers 409
// with refused when the task's status does not allow it, tells this
// process's engine (after), and returns the task as it now is.
func (s *Server) transition(ctx context.Context, rawID string, c store.StatusChange, refused string, after func(Engine, uuid.UUID)) (*taskOutput, error) {
	id, err := parseTaskID(rawID)
	if err != nil {
		return nil, err
	}
	c.TaskID, c.Scope = id, principalFrom(ctx).scope()
	_, _, err = s.deps.Store.SetStatus(ctx, c)
	var te *task.TransitionError
	if errors.As(err, &te) {
		return nil, huma.Error409Conflict("the task is " + string(te.From) + "; " + refused)
	}
	if err != nil {
		return nil, s.problem(err, "task")
	}
	if s.deps.Engine != nil {
		after(s.deps.Engine, id)
	}
	rec, err := s.deps.Store.GetTask(ctx, id, c.Scope)
	if err != nil {
		return nil, s.problem(err, "task")
	}
	return s.output(rec, http.StatusOK)
}
