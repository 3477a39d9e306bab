package client

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"
)

// Status is a task's status on the wire.
type Status string

// The statuses of a task.
const (
	StatusPending   Status = "pending"
	StatusExecuting Status = "executing"
	StatusCompleted Status = "completed"
	StatusFailed    Status = "failed"
	StatusCancelled Status = "cancelled"
)

// Terminal reports whether s is final: completed, failed or cancelled.
func (s Status) Terminal() bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusCancelled
}

// Task is a task as the API shows it: the fields every type has, typed,
// and the fields of its own type in Fields.
type Task struct {
	ID       string  `json:"id"`
	Type     string  `json:"task_type"`
	Status   Status  `json:"status"`
	Progress float64 `json:"progress"`
	// Stage is what the task's processor says it is doing.
	Stage string `json:"stage,omitempty"`

	ProviderType   string `json:"provider_type"`
	QueueName      string `json:"queue_name"`
	Priority       int    `json:"priority"`
	OriginInstance string `json:"origin_instance,omitempty"`
	OriginZone     string `json:"origin_zone,omitempty"`
	OriginTenantID string `json:"origin_tenant_id,omitempty"`
	// EntityID is the caller's id of what the task is about.
	EntityID string `json:"entity_id,omitempty"`

	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	StartedAt   *time.Time `json:"started_at"`
	CompletedAt *time.Time `json:"completed_at"`
	RunAt       time.Time  `json:"run_at"`

	ExecutorType     string `json:"executor_type,omitempty"`
	ExecutorInstance string `json:"executor_instance,omitempty"`
	ServiceTaskID    string `json:"service_task_id,omitempty"`

	// Errors lists one entry per failed attempt.
	Errors        []TaskError `json:"errors"`
	ErrorMessage  string      `json:"error_message,omitempty"`
	ErrorCategory string      `json:"error_category,omitempty"`
	RetryCount    int         `json:"retry_count"`
	MaxAttempts   int         `json:"max_attempts"`
	// Attempt counts the task's claims by workers.
	Attempt        int        `json:"attempt"`
	LeaseExpiresAt *time.Time `json:"lease_expires_at,omitempty"`

	IsResumed          bool       `json:"is_resumed"`
	ResumeAttemptCount int        `json:"resume_attempt_count"`
	LastResumeAttempt  *time.Time `json:"last_resume_attempt"`

	TimeoutSeconds      int `json:"timeout_seconds"`
	StartTimeoutSeconds int `json:"start_timeout_seconds,omitempty"`

	WebhookURL    string   `json:"webhook_url,omitempty"`
	WebhookEvents []string `json:"webhook_events,omitempty"`

	// Result is the task's outputs, once it has completed.
	Result *Result `json:"result,omitempty"`
	// Usage is what the services the task ran on reported spending,
	// summed over its runs.
	Usage Usage `json:"usage"`

	// Fields are the members of the task's own type (prompt, width, …):
	// every member of the JSON object that is not a field above. Field
	// decodes one.
	Fields map[string]json.RawMessage `json:"-"`
}

// Usage is what the services a task ran on reported spending: their own
// measure of service seconds and language models' tokens (0: none
// reported).
type Usage struct {
	ProviderSeconds float64 `json:"provider_seconds"`
	InputTokens     int64   `json:"input_tokens"`
	OutputTokens    int64   `json:"output_tokens"`
}

// TaskError is one entry of a task's error list.
type TaskError struct {
	Attempt  int       `json:"attempt"`
	Message  string    `json:"message"`
	Category string    `json:"category"`
	At       time.Time `json:"at"`
}

// Result is what a completed task produced.
type Result struct {
	// Artifacts are the files, with their download URLs.
	Artifacts []Artifact `json:"artifacts"`
	// Data is the type's own output (an echo's message, an LLM's text).
	Data json.RawMessage `json:"data,omitempty"`
	// Output is the result in the original clients' shape.
	Output *Output `json:"output,omitempty"`
}

// Output lists a result's images in the original clients' shape.
type Output struct {
	Images []OutputImage `json:"images"`
}

// OutputImage is one image of Output.
type OutputImage struct {
	URL    string `json:"url"`
	Seed   *int64 `json:"seed,omitempty"`
	Width  int    `json:"width,omitempty"`
	Height int    `json:"height,omitempty"`
}

// Artifact is one stored output file.
type Artifact struct {
	// Key is its key in the artifact store, "tasks/<task id>/<name>".
	Key string `json:"key"`
	// URL is where to download it (Client.Download).
	URL         string `json:"url"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	// SHA256 is the hex SHA-256 of the content, when known.
	SHA256 string `json:"sha256,omitempty"`
	Width  int    `json:"width,omitempty"`
	Height int    `json:"height,omitempty"`
	Seed   *int64 `json:"seed,omitempty"`
}

// TaskResult is GET /tasks/{id}/result: a task's status and outputs.
type TaskResult struct {
	TaskID   string  `json:"task_id"`
	TaskType string  `json:"task_type"`
	Status   Status  `json:"status"`
	Progress float64 `json:"progress"`
	// Result is nil until the task completes.
	Result        *Result `json:"result,omitempty"`
	ErrorMessage  string  `json:"error_message,omitempty"`
	ErrorCategory string  `json:"error_category,omitempty"`
}

// Field decodes the task's own field name into v; it reports whether the
// task has the field.
func (t *Task) Field(name string, v any) (bool, error) {
	raw, ok := t.Fields[name]
	if !ok {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return true, fmt.Errorf("task field %s: %w", name, err)
	}
	return true, nil
}

// taskAlias has Task's fields without its methods.
type taskAlias Task

// commonNames are the JSON names of Task's typed fields.
var commonNames = sync.OnceValue(func() map[string]bool {
	names := map[string]bool{}
	rt := reflect.TypeFor[taskAlias]()
	for i := range rt.NumField() {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			names[name] = true
		}
	}
	return names
})

// UnmarshalJSON implements json.Unmarshaler: the common fields into their
// fields, the others into Fields.
func (t *Task) UnmarshalJSON(raw []byte) error {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(raw, &all); err != nil {
		return err
	}
	var a taskAlias
	if err := json.Unmarshal(raw, &a); err != nil {
		return err
	}
	common := commonNames()
	for k := range all {
		if common[k] {
			delete(all, k)
		}
	}
	a.Fields = all
	*t = Task(a)
	return nil
}

// MarshalJSON implements json.Marshaler: one object with the common fields
// and Fields, as the API writes a task.
func (t Task) MarshalJSON() ([]byte, error) {
	base, err := json.Marshal(taskAlias(t))
	if err != nil {
		return nil, err
	}
	if len(t.Fields) == 0 {
		return base, nil
	}
	common := commonNames()
	extra := make(map[string]json.RawMessage, len(t.Fields))
	for k, v := range t.Fields {
		if !common[k] {
			extra[k] = v
		}
	}
	fields, err := json.Marshal(extra)
	if err != nil {
		return nil, err
	}
	if len(fields) <= 2 {
		return base, nil
	}
	out := append(base[:len(base)-1:len(base)-1], ',')
	return append(out, fields[1:]...), nil
}
