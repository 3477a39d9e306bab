package registry

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/task"
)

// TaskBase is the part of a create body that is not the type's own, by
// JSON name: what POST /tasks takes (the API's createBase, which adds the
// schema's documentation, converts to it) and what a workflow step's
// task body holds.
type TaskBase struct {
	TaskType            string     `json:"task_type,omitempty"`
	ProviderType        string     `json:"provider_type,omitempty"`
	QueueName           string     `json:"queue_name,omitempty"`
	Priority            int        `json:"priority,omitempty"`
	RunAt               *time.Time `json:"run_at,omitempty"`
	MaxAttempts         int        `json:"max_attempts,omitempty"`
	TimeoutSeconds      int        `json:"timeout_seconds,omitempty"`
	StartTimeoutSeconds int        `json:"start_timeout_seconds,omitempty"`
	WebhookURL          string     `json:"webhook_url,omitempty"`
	WebhookEvents       []string   `json:"webhook_events,omitempty"`
	OriginInstance      string     `json:"origin_instance,omitempty"`
	OriginZone          string     `json:"origin_zone,omitempty"`
	OriginTenantID      string     `json:"origin_tenant_id,omitempty"`
	EntityID            string     `json:"entity_id,omitempty"`
}

// NewTask returns the pending base row of a new task of d for tenant:
// b's values, else the type's defaults. Its provider_type is b's or the
// type's default as given; Place resolves it to a configured executor.
func (d *Definition) NewTask(b *TaskBase, tenant string) *task.Task {
	now := task.Now()
	id, err := uuid.NewV7()
	if err != nil {
		id = uuid.New()
	}
	t := &task.Task{
		ID: id, Type: d.Name, Status: task.StatusPending,
		ProviderType: d.DefaultProvider, QueueName: d.DefaultQueue, Priority: b.Priority,
		OriginInstance: b.OriginInstance, OriginZone: b.OriginZone, OriginTenantID: tenant,
		CreatedAt: now, UpdatedAt: now, RunAt: now,
		Errors: []task.Error{}, MaxAttempts: d.MaxAttempts, TimeoutSeconds: int(d.Timeout / time.Second),
		StartTimeoutSeconds: b.StartTimeoutSeconds, WebhookURL: b.WebhookURL, WebhookEvents: b.WebhookEvents,
		EntityID: b.EntityID,
	}
	if b.ProviderType != "" {
		t.ProviderType = b.ProviderType
	}
	if b.QueueName != "" {
		t.QueueName = b.QueueName
	}
	if b.RunAt != nil && b.RunAt.After(now) {
		t.RunAt = b.RunAt.UTC().Truncate(time.Microsecond)
	}
	if b.MaxAttempts > 0 {
		t.MaxAttempts = b.MaxAttempts
	}
	if b.TimeoutSeconds > 0 {
		t.TimeoutSeconds = b.TimeoutSeconds
	}
	return t
}

// Resolver picks the configured executor a task of a type runs on
// (executor.Set.Resolve).
type Resolver interface {
	Resolve(typeName string, kinds []string, fallback, requested string) (string, error)
}

// Place sets the executor of a new task t of d whose fields are model:
// requested (the body's provider_type, "" for none), else the type's
// default, as r resolves it; then the type's Scheduler, if any, may
// change it, and a changed choice is resolved again. An executor r
// refuses is a *FieldError of provider_type; a Scheduler's error is
// returned as it is. With a nil r the executor is taken as named.
func (d *Definition) Place(ctx context.Context, t *task.Task, model any, requested string, r Resolver) error {
	resolve := func(requested string) error {
		if r == nil {
			if requested != "" {
				t.ProviderType = requested
			}
			return nil
		}
		name, err := r.Resolve(d.Name, d.Providers, d.DefaultProvider, requested)
		if err != nil {
			return &FieldError{Field: "provider_type", Message: err.Error(), Value: requested}
		}
		t.ProviderType = name
		return nil
	}
	if err := resolve(requested); err != nil {
		return err
	}
	t.ProviderRequested = requested != ""
	if d.Scheduler == nil {
		return nil
	}
	chosen := t.ProviderType
	if err := d.Scheduler.Schedule(ctx, t, model); err != nil {
		return err
	}
	if t.ProviderType != chosen {
		return resolve(t.ProviderType)
	}
	return nil
}
