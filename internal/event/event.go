// Package event defines the event model: one durable row per task state
// change, written in the same transaction as the change (the outbox), with a
// body shaped like the original's webhook receiver schema.
package event

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/task"
)

// Kinds of events.
const (
	KindStatus   = "status_update"
	KindProgress = "progress_update"
)

// Event is one stored event. ID increases monotonically.
type Event struct {
	ID        int64           `json:"id"`
	TaskID    uuid.UUID       `json:"task_id"`
	TaskType  string          `json:"task_type"`
	EventType string          `json:"event_type"`
	Status    task.Status     `json:"status"`
	TenantID  string          `json:"-"`
	CreatedAt time.Time       `json:"created_at"`
	Body      json.RawMessage `json:"body"`

	// Kind is KindStatus or KindProgress.
	Kind string `json:"-"`
	// WebhookURL and WebhookEvents are the task's webhook target and
	// filter when the event was made; the store writes deliveries from
	// them.
	WebhookURL    string   `json:"-"`
	WebhookEvents []string `json:"-"`
}

// Body is the JSON document delivered to webhooks and streams: the
// original's receiver schema.
type Body struct {
	EventType      string         `json:"event_type"`
	TaskID         uuid.UUID      `json:"task_id"`
	TaskType       string         `json:"task_type"`
	Status         task.Status    `json:"status"`
	EntityID       string         `json:"entity_id"`
	OriginInstance string         `json:"origin_instance"`
	OriginZone     string         `json:"origin_zone"`
	OriginVersion  string         `json:"origin_version"`
	Timestamp      time.Time      `json:"timestamp"`
	Metadata       map[string]any `json:"metadata"`
	Progress       float64        `json:"progress"`
	ErrorMessage   string         `json:"error_message,omitempty"`
	ErrorCategory  string         `json:"error_category,omitempty"`
	StartedAt      *time.Time     `json:"started_at"`
	CompletedAt    *time.Time     `json:"completed_at"`
}

// Version is the server version reported as origin_version.
var Version = "0.1.0"

// New builds the event for task t after a change of the given kind.
func New(t *task.Task, kind string, at time.Time) Event {
	body := Body{
		EventType:      t.Type + "_" + kind,
		TaskID:         t.ID,
		TaskType:       t.Type,
		Status:         t.Status,
		EntityID:       t.EntityID,
		OriginInstance: t.OriginInstance,
		OriginZone:     t.OriginZone,
		OriginVersion:  Version,
		Timestamp:      at,
		Metadata:       map[string]any{"queue_name": t.QueueName, "attempt": t.Attempt, "retry_count": t.RetryCount},
		Progress:       t.Progress,
		ErrorMessage:   t.ErrorMessage,
		ErrorCategory:  t.ErrorCategory,
		StartedAt:      t.StartedAt,
		CompletedAt:    t.CompletedAt,
	}
	if body.EntityID == "" {
		body.EntityID = t.ID.String()
	}
	if t.Stage != "" {
		body.Metadata["stage"] = t.Stage
	}
	if t.OriginTenantID != "" {
		body.Metadata["origin_tenant_id"] = t.OriginTenantID
	}
	raw, err := appendBody(make([]byte, 0, 512), &body)
	if err != nil {
		// appendBody refuses what it does not write as encoding/json would;
		// encoding/json then decides.
		if raw, err = json.Marshal(body); err != nil {
			// Only a NaN or infinite progress or a time JSON cannot
			// write gets here: the engine clamps progress to 0–100, the
			// store refuses NaN, and task times come from the clock.
			panic("event: marshal body: " + err.Error())
		}
	}
	return Event{
		TaskID:    t.ID,
		TaskType:  t.Type,
		EventType: body.EventType,
		Status:    t.Status,
		TenantID:  t.OriginTenantID,
		CreatedAt: at,
		Body:      raw,
		Kind:      kind,

		WebhookURL:    t.WebhookURL,
		WebhookEvents: t.WebhookEvents,
	}
}
