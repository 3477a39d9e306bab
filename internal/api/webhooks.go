package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// WebhookDelivery is one event sent (or to be sent) to a webhook URL.
type WebhookDelivery struct {
	ID             int64            `json:"id" doc:"The delivery id, for redelivery."`
	TaskID         string           `json:"task_id" format:"uuid"`
	EventID        int64            `json:"event_id" doc:"The event's id; sent as the webhook-id header, the same on every attempt."`
	EventType      string           `json:"event_type" doc:"The event's type, e.g. generation_status_update."`
	EventStatus    task.Status      `json:"event_status" doc:"The task status the event reports."`
	URL            string           `json:"url" doc:"Where the event is sent."`
	EndpointID     *string          `json:"endpoint_id" format:"uuid" doc:"The webhook endpoint it was made for; null for the task's own webhook_url or the server's default URL (or an endpoint deleted since)."`
	Status         string           `json:"status" enum:"pending,delivered,failed,stopped" doc:"pending: waiting for an attempt or being sent; delivered: a 2xx answer; failed: out of attempts or retry window, or the destination is refused; stopped: the receiver answered 410 Gone."`
	AttemptCount   int              `json:"attempt_count" doc:"Attempts made, including any whose sender stopped before recording them."`
	NextAttemptAt  *time.Time       `json:"next_attempt_at" doc:"When the next attempt is due (pending deliveries only)."`
	LastStatusCode *int             `json:"last_status_code" doc:"The HTTP status of the last answer; null when there was none."`
	LastError      string           `json:"last_error,omitempty" doc:"Why the last attempt got no usable answer."`
	CreatedAt      time.Time        `json:"created_at"`
	UpdatedAt      *time.Time       `json:"updated_at"`
	DeliveredAt    *time.Time       `json:"delivered_at"`
	RedeliveredAt  *time.Time       `json:"redelivered_at" doc:"When a redelivery was last requested."`
	Attempts       []WebhookAttempt `json:"attempts" doc:"Every recorded attempt, oldest first."`
}

// WebhookAttempt is one recorded HTTP attempt of a delivery.
type WebhookAttempt struct {
	Attempt         int       `json:"attempt" doc:"The attempt's number; numbering continues across redeliveries."`
	StartedAt       time.Time `json:"started_at"`
	DurationMS      float64   `json:"duration_ms" doc:"Latency until the answer's first KiB was read, in milliseconds."`
	StatusCode      *int      `json:"status_code" doc:"The HTTP status of the answer; null when there was none."`
	ResponseSnippet string    `json:"response_snippet" doc:"The start of the answer's body (at most 1 KiB)."`
	Error           string    `json:"error,omitempty" doc:"Why there was no usable answer (connection refused, timeout, refused destination…)."`
}

type webhookListOutput struct {
	Body struct {
		TaskID     string            `json:"task_id" format:"uuid"`
		Deliveries []WebhookDelivery `json:"deliveries"`
	}
}

type workflowWebhookListOutput struct {
	Body struct {
		WorkflowID string            `json:"workflow_id" format:"uuid"`
		Deliveries []WebhookDelivery `json:"deliveries"`
	}
}

type deliveryInput struct {
	ID string `path:"id" doc:"The delivery id."`
}

type deliveryOutput struct {
	Body WebhookDelivery
}

func (s *Server) registerWebhookRoutes() {
	tags := []string{"Webhooks"}
	huma.Register(s.api, huma.Operation{
		OperationID: "list-task-webhooks", Method: http.MethodGet, Path: "/api/v1/tasks/{task_id}/webhooks", Tags: tags,
		Summary:     "List a task's webhook deliveries and their attempts",
		Description: "One delivery per event sent to the task's webhook_url (or the server's default URL), oldest first, each with every recorded attempt: status code, latency, response snippet, error.",
		Security:    bearer, Errors: []int{401, 404},
	}, func(ctx context.Context, in *idInput) (*webhookListOutput, error) {
		id, err := parseTaskID(in.TaskID)
		if err != nil {
			return nil, err
		}
		ds, err := s.deps.Store.ListDeliveries(ctx, id, principalFrom(ctx).scope())
		if err != nil {
			return nil, s.problem(err, "task")
		}
		out := &webhookListOutput{}
		out.Body.TaskID = id.String()
		out.Body.Deliveries = deliveriesJSON(ds)
		return out, nil
	})

	huma.Register(s.api, huma.Operation{
		OperationID: "list-workflow-webhooks", Method: http.MethodGet, Path: "/api/v1/workflows/{workflow_id}/webhooks", Tags: tags,
		Summary:     "List a workflow's webhook deliveries and their attempts",
		Description: "One delivery per workflow_status_update event sent to the workflow's webhook_url or to a matching webhook endpoint, oldest first, each with every recorded attempt. Its steps' tasks have theirs at GET /api/v1/tasks/{task_id}/webhooks.",
		Security:    bearer, Errors: []int{401, 404},
	}, func(ctx context.Context, in *workflowIDInput) (*workflowWebhookListOutput, error) {
		id, err := parseWorkflowID(in.WorkflowID)
		if err != nil {
			return nil, err
		}
		ds, err := s.deps.Store.ListWorkflowDeliveries(ctx, id, principalFrom(ctx).scope())
		if errors.Is(err, store.ErrWorkflowNotFound) {
			return nil, huma.Error404NotFound("workflow not found")
		}
		if err != nil {
			return nil, s.problem(err, "workflow")
		}
		out := &workflowWebhookListOutput{}
		out.Body.WorkflowID = id.String()
		out.Body.Deliveries = deliveriesJSON(ds)
		return out, nil
	})

	huma.Register(s.api, huma.Operation{
		OperationID: "redeliver-webhook", Method: http.MethodPost, Path: "/api/v1/webhooks/deliveries/{id}/redeliver", Tags: tags,
		Summary:     "Send a webhook delivery again",
		Description: "Makes the delivery pending and due now, whatever its status, with a fresh attempt budget and retry window. Its attempts are kept and their numbering continues; the event, its body and its webhook-id are the same.",
		Security:    bearer, Errors: []int{401, 404},
	}, func(ctx context.Context, in *deliveryInput) (*deliveryOutput, error) {
		id, err := strconv.ParseInt(in.ID, 10, 64)
		if err != nil || id <= 0 {
			return nil, huma.Error404NotFound("webhook delivery not found: " + quoteName(in.ID) + " is not a delivery id")
		}
		d, err := s.deps.Store.Redeliver(ctx, id, principalFrom(ctx).scope())
		if err != nil {
			return nil, s.problem(err, "webhook delivery")
		}
		return &deliveryOutput{Body: deliveryJSON(d)}, nil
	})
	s.registerEndpointRoutes()
	s.registerLedgerRoutes()
}

// deliveriesJSON is deliveryJSON of each of ds.
func deliveriesJSON(ds []store.Delivery) []WebhookDelivery {
	out := make([]WebhookDelivery, len(ds))
	for i := range ds {
		out[i] = deliveryJSON(&ds[i])
	}
	return out
}

func deliveryJSON(d *store.Delivery) WebhookDelivery {
	out := WebhookDelivery{
		ID: d.ID, TaskID: d.TaskID.String(), EventID: d.EventID, EventType: d.EventType, EventStatus: d.EventStatus,
		URL: d.URL, Status: string(d.Status), AttemptCount: d.Attempts, LastStatusCode: code(d.LastStatusCode),
		LastError: d.LastError, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt, DeliveredAt: d.DeliveredAt,
		RedeliveredAt: d.RedeliveredAt, Attempts: make([]WebhookAttempt, len(d.AttemptLog)),
	}
	if d.EndpointID != uuid.Nil {
		id := d.EndpointID.String()
		out.EndpointID = &id
	}
	if d.Status == store.DeliveryPending {
		next := d.NextAttemptAt
		out.NextAttemptAt = &next
	}
	for i, a := range d.AttemptLog {
		out.Attempts[i] = WebhookAttempt{
			Attempt: a.Attempt, StartedAt: a.StartedAt, DurationMS: float64(a.Duration.Microseconds()) / 1000,
			StatusCode: code(a.StatusCode), ResponseSnippet: a.ResponseSnippet, Error: a.Error,
		}
	}
	return out
}

// code is an HTTP status, or nil for none.
func code(c int) *int {
	if c == 0 {
		return nil
	}
	return &c
}
