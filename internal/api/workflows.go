package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/apikey"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/workflow"
)

// workflowStepIn is one step of a create request.
type workflowStepIn struct {
	ID        string         `json:"id" minLength:"1" maxLength:"64" pattern:"^[A-Za-z0-9_-]+$" doc:"The step's id, unique in the workflow."`
	Task      map[string]any `json:"task" doc:"A task create body, as POST /api/v1/tasks/ takes it (with task_type). A string that is exactly {{steps.<id>.<path>}} becomes that value of the step's result, with its JSON type; inside a longer string the value is interpolated as text."`
	DependsOn []string       `json:"depends_on,omitempty" maxItems:"100" doc:"Steps that must complete before this step's task is created."`
}

type workflowCreateBody struct {
	Steps          []workflowStepIn `json:"steps" minItems:"1" maxItems:"100" doc:"The steps: a DAG by depends_on."`
	Start          bool             `json:"start,omitempty" doc:"Start the workflow at once (otherwise POST /workflows/{workflow_id}/start)."`
	OriginTenantID string           `json:"origin_tenant_id,omitempty" maxLength:"256" doc:"Tenant; set from the API key for tenant keys. Every step's task belongs to it."`
	WebhookURL     string           `json:"webhook_url,omitempty" maxLength:"2048" format:"uri" doc:"HTTP(S) URL that receives this workflow's workflow_status_update events (the server's default webhook URL never does). Steps' tasks name their own."`
}

type workflowCreateInput struct {
	Body workflowCreateBody
}

type workflowIDInput struct {
	WorkflowID string `path:"workflow_id" doc:"The workflow id (a UUID)."`
}

type workflowListInput struct {
	Status string `query:"status" enum:"pending,running,completed,failed,cancelled" doc:"Only workflows in this status."`
	Limit  int    `query:"limit" minimum:"1" maximum:"500" doc:"Page size (default 50)."`
	Before string `query:"before" doc:"Continue a list: workflows created before this workflow id (next_before of the previous page)."`
}

// WorkflowStepView is a step as GET /workflows/{id} shows it.
type WorkflowStepView struct {
	ID        string     `json:"id"`
	Status    string     `json:"status" enum:"pending,running,completed,failed,cancelled" doc:"The step's task's status (executing is running), or the step's own while it has no task."`
	TaskID    *uuid.UUID `json:"task_id" doc:"The step's task, once created."`
	DependsOn []string   `json:"depends_on"`
	Error     string     `json:"error,omitempty" doc:"Why the step ended without a task, or its task's error message."`
}

// WorkflowView is a workflow as the API shows it.
type WorkflowView struct {
	ID             uuid.UUID          `json:"id"`
	Status         string             `json:"status" enum:"pending,running,completed,failed,cancelled"`
	Error          string             `json:"error,omitempty"`
	OriginTenantID string             `json:"origin_tenant_id,omitempty"`
	WebhookURL     string             `json:"webhook_url,omitempty" doc:"Receives the workflow's workflow_status_update events."`
	CreatedAt      time.Time          `json:"created_at"`
	UpdatedAt      time.Time          `json:"updated_at"`
	StartedAt      *time.Time         `json:"started_at"`
	CompletedAt    *time.Time         `json:"completed_at"`
	Steps          []WorkflowStepView `json:"steps,omitempty" doc:"The steps (GET of one workflow and the actions)."`
}

type workflowOutput struct {
	Status int
	Body   WorkflowView
}

type workflowListBody struct {
	Workflows  []WorkflowView `json:"workflows"`
	NextBefore string         `json:"next_before,omitempty" doc:"Pass as before for the next page; absent on the last."`
}

type workflowListOutput struct {
	Body workflowListBody
}

type workflowCleanupBody struct {
	Workflow         WorkflowView `json:"workflow"`
	DeletedArtifacts int          `json:"deleted_artifacts" doc:"Artifacts deleted."`
	Steps            []string     `json:"steps" doc:"The intermediate steps whose task's artifacts were deleted."`
}

type workflowCleanupOutput struct {
	Body workflowCleanupBody
}

func workflowView(w *store.Workflow) WorkflowView {
	v := WorkflowView{ID: w.ID, Status: w.Status, Error: w.Error, OriginTenantID: w.TenantID, WebhookURL: w.WebhookURL,
		CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt, StartedAt: w.StartedAt, CompletedAt: w.CompletedAt}
	for i := range w.Steps {
		st := &w.Steps[i]
		sv := WorkflowStepView{ID: st.ID, Status: st.Effective(), TaskID: st.TaskID, DependsOn: st.DependsOn, Error: st.Error}
		if sv.DependsOn == nil {
			sv.DependsOn = []string{}
		}
		if st.Task != nil && st.Task.ErrorMessage != "" {
			sv.Error = st.Task.ErrorMessage
		}
		v.Steps = append(v.Steps, sv)
	}
	return v
}

func (s *Server) registerWorkflowRoutes() {
	tags := []string{"Workflows"}
	huma.Register(s.api, huma.Operation{
		OperationID: "create-workflow", Method: http.MethodPost, Path: "/api/v1/workflows/", Tags: tags,
		Summary:     "Create a workflow",
		Description: "Steps form a DAG by depends_on; each step's task is created when its dependencies have completed, in the transaction that completes the last of them. Invalid graphs (cycles, unknown steps or references, a task body its type rejects) are a 422 naming the step.",
		Security:    bearer, MaxBodyBytes: s.cfg.MaxBodyBytes, DefaultStatus: http.StatusCreated,
		Errors: []int{400, 401, 413, 415, 422},
	}, s.createWorkflow)
	huma.Register(s.api, huma.Operation{
		OperationID: "list-workflows", Method: http.MethodGet, Path: "/api/v1/workflows/", Tags: tags,
		Summary: "List workflows, newest first", Security: bearer, Errors: []int{401, 422},
	}, s.listWorkflows)
	huma.Register(s.api, huma.Operation{
		OperationID: "get-workflow", Method: http.MethodGet, Path: "/api/v1/workflows/{workflow_id}", Tags: tags,
		Summary: "Get a workflow with its steps", Security: bearer, Errors: []int{401, 404},
	}, func(ctx context.Context, in *workflowIDInput) (*workflowOutput, error) {
		id, err := parseWorkflowID(in.WorkflowID)
		if err != nil {
			return nil, err
		}
		w, err := s.deps.Store.GetWorkflow(ctx, id, principalFrom(ctx).scope())
		return s.workflowResult(w, err)
	})
	actions := []struct {
		name, summary string
		do            func(context.Context, uuid.UUID, store.Scope) (*store.Workflow, error)
	}{
		// Closures, not method values: the store is read when a request
		// comes, so the routes can be registered without one (`compute
		// openapi`).
		{"start", "Start a pending workflow", func(ctx context.Context, id uuid.UUID, sc store.Scope) (*store.Workflow, error) {
			return s.deps.Store.StartWorkflow(ctx, id, sc)
		}},
		{"cancel", "Cancel a pending or running workflow: its pending and executing step tasks are cancelled, its waiting steps end", func(ctx context.Context, id uuid.UUID, sc store.Scope) (*store.Workflow, error) {
			return s.deps.Store.CancelWorkflow(ctx, id, sc)
		}},
		{"resume", "Resume a failed or cancelled workflow: failed and cancelled steps run again, completed ones are kept", func(ctx context.Context, id uuid.UUID, sc store.Scope) (*store.Workflow, error) {
			return s.deps.Store.ResumeWorkflow(ctx, id, sc)
		}},
	}
	for _, a := range actions {
		huma.Register(s.api, huma.Operation{
			OperationID: a.name + "-workflow", Method: http.MethodPost, Path: "/api/v1/workflows/{workflow_id}/" + a.name, Tags: tags,
			Summary: a.summary, Security: bearer, Errors: []int{401, 404, 409},
		}, func(ctx context.Context, in *workflowIDInput) (*workflowOutput, error) {
			id, err := parseWorkflowID(in.WorkflowID)
			if err != nil {
				return nil, err
			}
			w, err := a.do(ctx, id, principalFrom(ctx).scope())
			if err == nil && s.deps.Engine != nil {
				s.deps.Engine.Notify()
			}
			return s.workflowResult(w, err)
		})
	}
	huma.Register(s.api, huma.Operation{
		OperationID: "cleanup-workflow", Method: http.MethodPost, Path: "/api/v1/workflows/{workflow_id}/cleanup", Tags: tags,
		Summary:     "Delete a finished workflow's intermediate artifacts",
		Description: "Deletes the artifacts of every step another step depends on; the final steps' outputs are kept. Only a completed, failed or cancelled workflow is cleaned up.",
		Security:    bearer, Errors: []int{401, 404, 409, 503},
	}, s.cleanupWorkflow)
}

// workflowEventType is the task_type of workflows' events in the log:
// the firehose stream takes it as a task_type filter.
const workflowEventType = "workflow"

// withoutWorkflows returns names without workflowEventType.
func withoutWorkflows(names []string) []string {
	var out []string
	for _, n := range names {
		if n != workflowEventType {
			out = append(out, n)
		}
	}
	return out
}

func parseWorkflowID(raw string) (uuid.UUID, error) {
	id, ok := canonicalUUID(raw)
	if !ok {
		return uuid.Nil, huma.Error404NotFound("workflow not found")
	}
	return id, nil
}

// workflowResult answers a workflow, or the problem err is.
func (s *Server) workflowResult(w *store.Workflow, err error) (*workflowOutput, error) {
	switch {
	case errors.Is(err, store.ErrWorkflowNotFound):
		return nil, huma.Error404NotFound("workflow not found")
	case errors.Is(err, store.ErrWorkflowState):
		return nil, huma.Error409Conflict(err.Error())
	case err != nil:
		return nil, s.problem(err, "workflow")
	}
	return &workflowOutput{Status: http.StatusOK, Body: workflowView(w)}, nil
}

// stepProblem is the 422 of an invalid step, naming it.
func stepProblem(index int, step, field, msg string) error {
	loc := "body.steps[" + strconv.Itoa(index) + "]"
	if field != "" {
		loc += "." + field
	}
	what := "steps[" + strconv.Itoa(index) + "]"
	if step != "" {
		what = fmt.Sprintf("step %q", step)
	}
	return huma.Error422UnprocessableEntity("invalid workflow: "+what+": "+msg, &huma.ErrorDetail{
		Location: loc, Message: what + ": " + msg, Value: step,
	})
}

func (s *Server) createWorkflow(ctx context.Context, in *workflowCreateInput) (*workflowOutput, error) {
	p := principalFrom(ctx)
	tenant := in.Body.OriginTenantID
	if tenant != "" {
		if err := apikey.CheckTenant(tenant); err != nil {
			return nil, huma.Error422UnprocessableEntity("validation failed", &huma.ErrorDetail{
				Location: "body.origin_tenant_id", Message: err.Error(), Value: tenant,
			})
		}
	}
	if in.Body.WebhookURL != "" {
		if err := checkWebhookURL(in.Body.WebhookURL); err != nil {
			return nil, s.problem(err, "workflow")
		}
	}
	if !p.admin {
		if d := foreignTenant(p, "body.origin_tenant_id", tenant); d != nil {
			return nil, huma.Error422UnprocessableEntity("validation failed", d)
		}
		tenant = p.tenantID
	}
	specs := make([]workflow.StepSpec, len(in.Body.Steps))
	for i, st := range in.Body.Steps {
		raw, err := json.Marshal(st.Task)
		if err != nil {
			return nil, stepProblem(i, st.ID, "task", "not a JSON object")
		}
		specs[i] = workflow.StepSpec{ID: st.ID, Task: raw, DependsOn: st.DependsOn}
	}
	if err := workflow.Parse(specs); err != nil {
		var se *workflow.StepError
		if errors.As(err, &se) {
			return nil, stepProblem(se.Index, se.Step, se.Field, se.Msg)
		}
		return nil, huma.Error422UnprocessableEntity(err.Error())
	}
	// Each body is checked as its task would be created now; one with
	// references is checked once they are filled (a body its type then
	// rejects fails its step), here only for its type.
	b := s.workflowBuilder()
	for i, st := range in.Body.Steps {
		if len(workflow.References(st.Task)) > 0 {
			name, _ := st.Task["task_type"].(string)
			if _, ok := s.types[name]; !ok {
				return nil, stepProblem(i, st.ID, "task.task_type", fmt.Sprintf("unknown task type %q", name))
			}
			// Whether an executor can run the step does not wait for its
			// references (unless provider_type is one of them): a step
			// no configured executor can run is refused now, not after
			// the steps before it have run.
			if err := s.checkStepExecutor(name, st.Task["provider_type"]); err != nil {
				return nil, stepProblem(i, st.ID, "task.provider_type", err.Error())
			}
			continue
		}
		if ts := s.types[st.Task["task_type"].(string)]; ts != nil {
			// The type's create schema, as POST /tasks validates it.
			obj := make(map[string]any, len(st.Task)+len(ts.defaults))
			for k, v := range ts.defaults {
				obj[k] = v
			}
			for k, v := range st.Task {
				obj[k] = v
			}
			res := &huma.ValidateResult{}
			loc := "body.steps[" + strconv.Itoa(i) + "].task"
			huma.Validate(s.api.OpenAPI().Components.Schemas, ts.create, huma.NewPathBuffer([]byte(loc), 4), huma.ModeWriteToServer, obj, res)
			if len(res.Errors) > 0 {
				details := make([]error, len(res.Errors))
				copy(details, res.Errors)
				return nil, huma.Error422UnprocessableEntity(fmt.Sprintf("invalid workflow: step %q: its task is invalid", st.ID), details...)
			}
		}
		if _, err := b.Build(ctx, specs[i].Task, tenant); err != nil {
			return nil, stepProblem(i, st.ID, "task", err.Error())
		}
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, s.problem(err, "workflow")
	}
	wf := &store.Workflow{ID: id, TenantID: tenant, WebhookURL: in.Body.WebhookURL}
	for _, sp := range specs {
		wf.Steps = append(wf.Steps, store.WorkflowStep{ID: sp.ID, Body: sp.Task, DependsOn: sp.DependsOn})
	}
	w, err := s.deps.Store.CreateWorkflow(ctx, wf, in.Body.Start)
	if err != nil {
		return nil, s.problem(err, "workflow")
	}
	if in.Body.Start && s.deps.Engine != nil {
		s.deps.Engine.Notify()
	}
	return &workflowOutput{Status: http.StatusCreated, Body: workflowView(w)}, nil
}

// checkStepExecutor reports whether a configured executor can run a step
// of type typeName whose body names provider (absent, a name, or a value
// still to be filled from a reference, which is not checked).
func (s *Server) checkStepExecutor(typeName string, provider any) error {
	def, ok := s.deps.Registry.Lookup(typeName)
	r := s.resolver()
	if !ok || r == nil {
		return nil
	}
	requested := ""
	switch p := provider.(type) {
	case nil:
	case string:
		if len(workflow.References(p)) > 0 {
			return nil
		}
		requested = p
	default:
		return nil // the type's schema refuses it when the step is created
	}
	_, err := r.Resolve(def.Name, def.Providers, def.DefaultProvider, requested)
	return err
}

// workflowBuilder builds step tasks the way the store's workflow policy
// will.
func (s *Server) workflowBuilder() *workflow.Builder {
	s.wfOnce.Do(func() {
		s.wfBuilder = &workflow.Builder{Registry: s.deps.Registry, Executors: s.resolver()}
	})
	return s.wfBuilder
}

func (s *Server) listWorkflows(ctx context.Context, in *workflowListInput) (*workflowListOutput, error) {
	f := store.WorkflowFilter{Scope: principalFrom(ctx).scope(), Status: in.Status, Limit: in.Limit}
	if in.Before != "" {
		id, ok := canonicalUUID(in.Before)
		if !ok {
			return nil, huma.Error422UnprocessableEntity("validation failed", &huma.ErrorDetail{
				Location: "query.before", Message: "not a workflow id", Value: in.Before,
			})
		}
		f.Before = id
	}
	ws, err := s.deps.Store.ListWorkflows(ctx, f)
	if err != nil {
		return nil, s.problem(err, "workflow")
	}
	out := &workflowListOutput{Body: workflowListBody{Workflows: make([]WorkflowView, len(ws))}}
	for i, w := range ws {
		out.Body.Workflows[i] = workflowView(w)
	}
	limit := in.Limit
	if limit <= 0 {
		limit = 50
	}
	if len(ws) == limit {
		out.Body.NextBefore = ws[len(ws)-1].ID.String()
	}
	return out, nil
}

func (s *Server) cleanupWorkflow(ctx context.Context, in *workflowIDInput) (*workflowCleanupOutput, error) {
	id, err := parseWorkflowID(in.WorkflowID)
	if err != nil {
		return nil, err
	}
	w, err := s.deps.Store.GetWorkflow(ctx, id, principalFrom(ctx).scope())
	if _, err := s.workflowResult(w, err); err != nil {
		return nil, err
	}
	if w.Status == store.WorkflowPending || w.Status == store.WorkflowRunning {
		return nil, huma.Error409Conflict("the workflow is " + w.Status + "; only a finished workflow is cleaned up")
	}
	needed := map[string]bool{}
	for _, st := range w.Steps {
		for _, d := range st.DependsOn {
			needed[d] = true
		}
	}
	out := &workflowCleanupOutput{Body: workflowCleanupBody{Steps: []string{}}}
	for _, st := range w.Steps {
		if !needed[st.ID] || st.Task == nil || !st.Task.Status.Terminal() || s.deps.Artifacts == nil {
			continue
		}
		n, err := s.deps.Artifacts.DeleteTask(ctx, st.Task.ID.String())
		if err != nil {
			s.log.Error("deleting a workflow step's artifacts", "workflow_id", w.ID, "task_id", st.Task.ID, "error", err)
			return nil, huma.ErrorWithHeaders(huma.NewError(http.StatusServiceUnavailable,
				"the artifact store is unavailable; retry later"), http.Header{"Retry-After": {retryUnavailable}})
		}
		out.Body.DeletedArtifacts += n
		out.Body.Steps = append(out.Body.Steps, st.ID)
	}
	out.Body.Workflow = workflowView(w)
	return out, nil
}
