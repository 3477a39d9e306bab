package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/task"
)

// Workflow statuses. A workflow is pending until it starts, running while
// any step may still run, and then completed (every step completed),
// failed (a step failed) or cancelled.
const (
	WorkflowPending   = "pending"
	WorkflowRunning   = "running"
	WorkflowCompleted = "completed"
	WorkflowFailed    = "failed"
	WorkflowCancelled = "cancelled"
)

// Step statuses kept for steps without a task; a step with a task has its
// task's status (executing shown as running).
const (
	StepWaiting   = "pending"
	StepFailed    = "failed"
	StepCancelled = "cancelled"
)

// Workflow is a stored DAG of steps, each of which becomes one task.
type Workflow struct {
	ID       uuid.UUID
	TenantID string
	Status   string
	Error    string
	// WebhookURL receives the workflow's workflow_status_update events
	// ("" sends them only to matching webhook endpoints).
	WebhookURL  string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	StartedAt   *time.Time
	CompletedAt *time.Time
	// Steps are in the order they were given.
	Steps []WorkflowStep
}

// WorkflowStep is one step: its task's create body (with references
// {{steps.<id>.<path>}} still in it) and, once created, its task.
type WorkflowStep struct {
	ID        string
	DependsOn []string
	Body      json.RawMessage
	// Status is the step's own status while it has no task (StepWaiting,
	// StepFailed, StepCancelled); with a task it is the task's.
	Status string
	Error  string
	TaskID *uuid.UUID
	// Task is the step's task as it is now (status, result), loaded
	// with the workflow; nil while the step has none.
	Task *task.Task
}

// Effective is the step's status as clients see it: its task's status
// (executing is running), failed when its task was deleted, else its own.
func (s *WorkflowStep) Effective() string {
	if s.Task == nil {
		if s.TaskID != nil {
			// Its task was deleted (only a finished task can be).
			return StepFailed
		}
		return s.Status
	}
	if s.Task.Status == task.StatusExecuting {
		return WorkflowRunning
	}
	return string(s.Task.Status)
}

// WorkflowPlan is what a WorkflowHook decides for a workflow: tasks to
// create for steps, steps that end without a task, and the workflow's new
// status ("" keeps it).
type WorkflowPlan struct {
	Create []StepTask
	// End gives steps without a task their final status (StepFailed or
	// StepCancelled) and why.
	End    []StepEnd
	Status string
	Error  string
}

// StepTask is a step's new task.
type StepTask struct {
	StepID string
	Record *Record
}

// StepEnd ends a step that has no task.
type StepEnd struct {
	StepID string
	Status string
	Error  string
}

// WorkflowHook is the workflow policy the store runs inside its write
// transactions: when a workflow starts, is cancelled or resumed, and in
// the transaction that writes a terminal status of a step's task. It
// reads the workflow as loaded (under a lock on the workflow's row) and
// returns what to write; it must not touch the store. Package workflow
// implements it.
type WorkflowHook interface {
	Advance(ctx context.Context, wf *Workflow) (WorkflowPlan, error)
}

// WorkflowFilter selects workflows for ListWorkflows, newest first.
type WorkflowFilter struct {
	Scope  Scope
	Status string
	// Limit is the page size (1–500; 0 means 50).
	Limit int
	// Before continues a list: workflows created before that id.
	Before uuid.UUID
}

// Workflows is the store's view of workflows (the API's).
type Workflows interface {
	// CreateWorkflow inserts a pending workflow and its steps with a
	// workflow_status_update event; with start, it also starts it in the
	// same transaction.
	CreateWorkflow(ctx context.Context, wf *Workflow, start bool) (*Workflow, error)
	// GetWorkflow loads a workflow in scope with its steps and their
	// tasks; ErrWorkflowNotFound when it is not in scope.
	GetWorkflow(ctx context.Context, id uuid.UUID, scope Scope) (*Workflow, error)
	// ListWorkflowDeliveries returns the webhook deliveries of a
	// workflow's own events (workflow_status_update), oldest first, each
	// with its attempts; ErrWorkflowNotFound when the workflow is not in
	// scope. As ListDeliveries, a tenant does not see the deliveries made
	// for an admin's endpoint that receives every tenant's events.
	ListWorkflowDeliveries(ctx context.Context, id uuid.UUID, scope Scope) ([]Delivery, error)
	// ListWorkflows returns workflows (without their steps' tasks),
	// newest first.
	ListWorkflows(ctx context.Context, f WorkflowFilter) ([]*Workflow, error)
	// StartWorkflow moves a pending workflow to running and creates the
	// tasks of the steps that depend on nothing. ErrWorkflowState when it
	// is not pending.
	StartWorkflow(ctx context.Context, id uuid.UUID, scope Scope) (*Workflow, error)
	// CancelWorkflow cancels a pending or running workflow: its pending
	// step tasks are cancelled, its waiting steps end cancelled (executing
	// tasks get a cancel request and finish as the engine decides).
	CancelWorkflow(ctx context.Context, id uuid.UUID, scope Scope) (*Workflow, error)
	// ResumeWorkflow runs a failed or cancelled workflow again: steps
	// whose task failed or was cancelled, and steps that ended without a
	// task, wait again; completed steps are kept.
	ResumeWorkflow(ctx context.Context, id uuid.UUID, scope Scope) (*Workflow, error)
}

// ErrWorkflowNotFound means no workflow with that id is in scope.
var ErrWorkflowNotFound = errors.New("workflow not found")

// ErrWorkflowState means the workflow's status does not allow the request.
var ErrWorkflowState = errors.New("the workflow's status does not allow this")

// WorkflowEventType is the event_type of a workflow's events.
const WorkflowEventType = "workflow_status_update"
