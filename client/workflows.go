package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// WorkflowStep is one step of a workflow to create.
type WorkflowStep struct {
	// ID names the step, unique in the workflow.
	ID string `json:"id"`
	// Task is the step's task create body, with task_type; a string that
	// is exactly {{steps.<id>.<path>}} becomes that value of another
	// step's result.
	Task map[string]any `json:"task"`
	// DependsOn lists the steps that must complete first.
	DependsOn []string `json:"depends_on,omitempty"`
}

// WorkflowCreate is a workflow create request.
type WorkflowCreate struct {
	Steps []WorkflowStep `json:"steps"`
	// Start starts the workflow at once.
	Start          bool   `json:"start,omitempty"`
	OriginTenantID string `json:"origin_tenant_id,omitempty"`
	// WebhookURL receives the workflow's workflow_status_update events.
	WebhookURL string `json:"webhook_url,omitempty"`
}

// The statuses of a workflow and of its steps.
const (
	WorkflowPending   = "pending"
	WorkflowRunning   = "running"
	WorkflowCompleted = "completed"
	WorkflowFailed    = "failed"
	WorkflowCancelled = "cancelled"
)

// Workflow is a workflow as the API shows it.
type Workflow struct {
	ID string `json:"id"`
	// Status is pending, running, completed, failed or cancelled.
	Status         string     `json:"status"`
	Error          string     `json:"error,omitempty"`
	OriginTenantID string     `json:"origin_tenant_id,omitempty"`
	WebhookURL     string     `json:"webhook_url,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
	UpdatedAt      time.Time  `json:"updated_at"`
	StartedAt      *time.Time `json:"started_at"`
	CompletedAt    *time.Time `json:"completed_at"`
	// Steps are the steps with their state (absent in lists).
	Steps []WorkflowStepState `json:"steps,omitempty"`
}

// Terminal reports whether the workflow has finished.
func (w *Workflow) Terminal() bool {
	return w.Status == WorkflowCompleted || w.Status == WorkflowFailed || w.Status == WorkflowCancelled
}

// WorkflowStepState is one step of a Workflow.
type WorkflowStepState struct {
	ID string `json:"id"`
	// Status is the step's task's status (executing shows as running),
	// or the step's own while it has no task.
	Status string `json:"status"`
	// TaskID is the step's task, once created.
	TaskID    *string  `json:"task_id"`
	DependsOn []string `json:"depends_on"`
	Error     string   `json:"error,omitempty"`
}

// WorkflowListOptions filter and page a workflow list.
type WorkflowListOptions struct {
	Status string
	Limit  int
	// Before is the NextBefore of the previous page.
	Before string
}

// WorkflowPage is one page of workflows, newest first.
type WorkflowPage struct {
	Workflows []*Workflow `json:"workflows"`
	// NextBefore continues the list (WorkflowListOptions.Before); empty
	// on the last page.
	NextBefore string `json:"next_before,omitempty"`
}

// WorkflowCleanup is what CleanupWorkflow deleted.
type WorkflowCleanup struct {
	Workflow         Workflow `json:"workflow"`
	DeletedArtifacts int      `json:"deleted_artifacts"`
	// Steps are the intermediate steps whose artifacts were deleted.
	Steps []string `json:"steps"`
}

// CreateWorkflow creates a workflow; an invalid graph is a *Problem with
// status 422 naming the step.
func (c *Client) CreateWorkflow(ctx context.Context, in WorkflowCreate) (*Workflow, error) {
	return callFor[Workflow](ctx, c, http.MethodPost, "/api/v1/workflows/", nil, in)
}

// GetWorkflow returns a workflow with its steps.
func (c *Client) GetWorkflow(ctx context.Context, id string) (*Workflow, error) {
	return callFor[Workflow](ctx, c, http.MethodGet, "/api/v1/workflows/"+escape(id), nil, nil)
}

// ListWorkflows returns one page of workflows, newest first (opts may be
// nil).
func (c *Client) ListWorkflows(ctx context.Context, opts *WorkflowListOptions) (*WorkflowPage, error) {
	q := url.Values{}
	if opts != nil {
		if opts.Status != "" {
			q.Set("status", opts.Status)
		}
		if opts.Limit > 0 {
			q.Set("limit", strconv.Itoa(opts.Limit))
		}
		if opts.Before != "" {
			q.Set("before", opts.Before)
		}
	}
	return callFor[WorkflowPage](ctx, c, http.MethodGet, "/api/v1/workflows/", q, nil)
}

// StartWorkflow starts a pending workflow.
func (c *Client) StartWorkflow(ctx context.Context, id string) (*Workflow, error) {
	return c.workflowAction(ctx, id, "start")
}

// CancelWorkflow cancels a pending or running workflow and its step tasks.
func (c *Client) CancelWorkflow(ctx context.Context, id string) (*Workflow, error) {
	return c.workflowAction(ctx, id, "cancel")
}

// ResumeWorkflow runs a failed or cancelled workflow's failed and
// cancelled steps again.
func (c *Client) ResumeWorkflow(ctx context.Context, id string) (*Workflow, error) {
	return c.workflowAction(ctx, id, "resume")
}

func (c *Client) workflowAction(ctx context.Context, id, name string) (*Workflow, error) {
	return callFor[Workflow](ctx, c, http.MethodPost, "/api/v1/workflows/"+escape(id)+"/"+name, nil, nil)
}

// CleanupWorkflow deletes a finished workflow's intermediate artifacts.
func (c *Client) CleanupWorkflow(ctx context.Context, id string) (*WorkflowCleanup, error) {
	return callFor[WorkflowCleanup](ctx, c, http.MethodPost, "/api/v1/workflows/"+escape(id)+"/cleanup", nil, nil)
}

// WaitWorkflow reads the workflow every interval (default 1 s) until it
// has finished, and returns it.
func (c *Client) WaitWorkflow(ctx context.Context, id string, interval time.Duration) (*Workflow, error) {
	if interval <= 0 {
		interval = time.Second
	}
	for {
		w, err := c.GetWorkflow(ctx, id)
		if err != nil || w.Terminal() {
			return w, err
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}
