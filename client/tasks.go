package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// TaskCreate is a create request. Fields holds the type's own fields; the
// other fields are the ones every type takes, each left to the server's
// default when zero.
type TaskCreate struct {
	// Type is the task type ("generation", "echo", …). It may be left
	// empty when Fields carries task_type.
	Type string
	// Fields are the type's own fields: anything that encodes as a JSON
	// object (a struct, a map, a json.RawMessage). It may also carry the
	// common fields below under their JSON names; a field set below
	// overrides it.
	Fields any

	ProviderType        string
	QueueName           string
	Priority            int
	RunAt               time.Time
	MaxAttempts         int
	TimeoutSeconds      int
	StartTimeoutSeconds int
	WebhookURL          string
	WebhookEvents       []string
	EntityID            string
	OriginTenantID      string
	OriginInstance      string
	OriginZone          string

	// IdempotencyKey, when set, makes a repeated create answer the first
	// task instead of creating another.
	IdempotencyKey string
}

// body is the JSON object of the create request.
func (in *TaskCreate) body() (map[string]any, error) {
	obj := map[string]any{}
	if in.Fields != nil {
		raw, err := json.Marshal(in.Fields)
		if err != nil {
			return nil, fmt.Errorf("task fields: %w", err)
		}
		if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
			return nil, errors.New("task fields: want something that encodes as a JSON object")
		}
	}
	set := func(name string, v any, zero bool) {
		if !zero {
			obj[name] = v
		}
	}
	if typ, ok := obj["task_type"].(string); ok && in.Type != "" && typ != in.Type {
		return nil, fmt.Errorf("task type %q, but the fields name %q", in.Type, typ)
	}
	set("task_type", in.Type, in.Type == "")
	if _, ok := obj["task_type"]; !ok {
		return nil, errors.New("no task type")
	}
	set("provider_type", in.ProviderType, in.ProviderType == "")
	set("queue_name", in.QueueName, in.QueueName == "")
	set("priority", in.Priority, in.Priority == 0)
	set("run_at", in.RunAt, in.RunAt.IsZero())
	set("max_attempts", in.MaxAttempts, in.MaxAttempts == 0)
	set("timeout_seconds", in.TimeoutSeconds, in.TimeoutSeconds == 0)
	set("start_timeout_seconds", in.StartTimeoutSeconds, in.StartTimeoutSeconds == 0)
	set("webhook_url", in.WebhookURL, in.WebhookURL == "")
	set("webhook_events", in.WebhookEvents, in.WebhookEvents == nil)
	set("entity_id", in.EntityID, in.EntityID == "")
	set("origin_tenant_id", in.OriginTenantID, in.OriginTenantID == "")
	set("origin_instance", in.OriginInstance, in.OriginInstance == "")
	set("origin_zone", in.OriginZone, in.OriginZone == "")
	return obj, nil
}

// Create creates a task (POST /api/v1/tasks/) and returns it as created.
// A body the type refuses is a *Problem with status 422 naming the fields.
func (c *Client) Create(ctx context.Context, in TaskCreate) (*Task, error) {
	obj, err := in.body()
	if err != nil {
		return nil, fmt.Errorf("client: create: %w", err)
	}
	req, err := c.newRequest(ctx, http.MethodPost, "/api/v1/tasks/", nil, obj)
	if err != nil {
		return nil, err
	}
	if in.IdempotencyKey != "" {
		req.Header.Set("Idempotency-Key", in.IdempotencyKey)
	}
	var t Task
	if err := c.do(req, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// Get returns a task; an unknown one (or another tenant's) is a *Problem
// with status 404.
func (c *Client) Get(ctx context.Context, id string) (*Task, error) {
	return callFor[Task](ctx, c, http.MethodGet, "/api/v1/tasks/"+escape(id), nil, nil)
}

// ListOptions filter and page a task list; zero fields do not filter.
type ListOptions struct {
	// Types, Statuses and Queues list the accepted values of each.
	Types    []string
	Statuses []Status
	Queues   []string
	// TenantID keeps the tasks of one tenant.
	TenantID string
	// CreatedAfter and CreatedBefore bound the creation time.
	CreatedAfter, CreatedBefore time.Time
	// Limit is the page size (server default 50, at most 500).
	Limit int
	// Cursor is the NextCursor of the previous page.
	Cursor string
}

func (o *ListOptions) query() url.Values {
	q := url.Values{}
	if o == nil {
		return q
	}
	q["task_type"] = o.Types
	for _, s := range o.Statuses {
		q.Add("status", string(s))
	}
	q["queue_name"] = o.Queues
	if o.TenantID != "" {
		q.Set("origin_tenant_id", o.TenantID)
	}
	if !o.CreatedAfter.IsZero() {
		q.Set("created_after", o.CreatedAfter.Format(time.RFC3339Nano))
	}
	if !o.CreatedBefore.IsZero() {
		q.Set("created_before", o.CreatedBefore.Format(time.RFC3339Nano))
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Cursor != "" {
		q.Set("cursor", o.Cursor)
	}
	for k, v := range q {
		if len(v) == 0 {
			delete(q, k)
		}
	}
	return q
}

// TaskPage is one page of a task list, newest first.
type TaskPage struct {
	Items []*Task `json:"items"`
	// NextCursor continues the list (ListOptions.Cursor); empty on the
	// last page.
	NextCursor string `json:"next_cursor"`
}

// List returns one page of tasks, newest first (opts may be nil).
func (c *Client) List(ctx context.Context, opts *ListOptions) (*TaskPage, error) {
	var raw struct {
		Items      []*Task `json:"items"`
		NextCursor *string `json:"next_cursor"`
	}
	if err := c.call(ctx, http.MethodGet, "/api/v1/tasks/", opts.query(), nil, &raw); err != nil {
		return nil, err
	}
	page := &TaskPage{Items: raw.Items}
	if raw.NextCursor != nil {
		page.NextCursor = *raw.NextCursor
	}
	return page, nil
}

// All iterates over every task opts selects, newest first, fetching the
// pages as it goes. An error ends the iteration.
func (c *Client) All(ctx context.Context, opts *ListOptions) iter.Seq2[*Task, error] {
	return func(yield func(*Task, error) bool) {
		o := ListOptions{}
		if opts != nil {
			o = *opts
		}
		for {
			page, err := c.List(ctx, &o)
			if err != nil {
				yield(nil, err)
				return
			}
			for _, t := range page.Items {
				if !yield(t, nil) {
					return
				}
			}
			if page.NextCursor == "" {
				return
			}
			o.Cursor = page.NextCursor
		}
	}
}

// TaskPatch changes a pending task (PATCH /api/v1/tasks/{id}). Nil fields
// are left as they are.
type TaskPatch struct {
	Priority    *int
	QueueName   *string
	RunAt       *time.Time
	MaxAttempts *int
	// WebhookURL sets the task's webhook URL; a pointer to "" removes it
	// (the server's default URL applies).
	WebhookURL *string
	// WebhookEvents sets the events sent; a non-nil empty slice removes
	// the list (every status change is sent).
	WebhookEvents []string
	// Fields are the type's updatable fields, by JSON name.
	Fields map[string]any
}

func (p *TaskPatch) body() map[string]any {
	obj := make(map[string]any, len(p.Fields)+6)
	for k, v := range p.Fields {
		obj[k] = v
	}
	if p.Priority != nil {
		obj["priority"] = *p.Priority
	}
	if p.QueueName != nil {
		obj["queue_name"] = *p.QueueName
	}
	if p.RunAt != nil {
		obj["run_at"] = *p.RunAt
	}
	if p.MaxAttempts != nil {
		obj["max_attempts"] = *p.MaxAttempts
	}
	if p.WebhookURL != nil {
		if *p.WebhookURL == "" {
			obj["webhook_url"] = nil
		} else {
			obj["webhook_url"] = *p.WebhookURL
		}
	}
	if p.WebhookEvents != nil {
		if len(p.WebhookEvents) == 0 {
			obj["webhook_events"] = nil
		} else {
			obj["webhook_events"] = p.WebhookEvents
		}
	}
	return obj
}

// Patch changes a pending task and returns it; a task that is no longer
// pending is a *Problem with status 409.
func (c *Client) Patch(ctx context.Context, id string, p TaskPatch) (*Task, error) {
	return callFor[Task](ctx, c, http.MethodPatch, "/api/v1/tasks/"+escape(id), nil, p.body())
}

// Cancel cancels a pending or executing task and returns it; a finished
// one is a *Problem with status 409.
func (c *Client) Cancel(ctx context.Context, id string) (*Task, error) {
	return c.action(ctx, id, "cancel")
}

// Retry runs a failed or cancelled task again, at once, and returns it
// (pending); another status is a *Problem with status 409.
func (c *Client) Retry(ctx context.Context, id string) (*Task, error) {
	return c.action(ctx, id, "retry")
}

func (c *Client) action(ctx context.Context, id, name string) (*Task, error) {
	return callFor[Task](ctx, c, http.MethodPost, "/api/v1/tasks/"+escape(id)+"/"+name, nil, nil)
}

// Delete deletes a finished task with its events and artifacts; a pending
// or executing one is a *Problem with status 409.
func (c *Client) Delete(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, "/api/v1/tasks/"+escape(id), nil, nil, nil)
}

// Result returns a task's status and, once it has completed, its outputs.
func (c *Client) Result(ctx context.Context, id string) (*TaskResult, error) {
	return callFor[TaskResult](ctx, c, http.MethodGet, "/api/v1/tasks/"+escape(id)+"/result", nil, nil)
}
