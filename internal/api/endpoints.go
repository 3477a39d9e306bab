package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/webhook"
)

// WebhookEndpointFilter chooses the events an endpoint receives; an empty
// list does not filter.
type WebhookEndpointFilter struct {
	TaskTypes  []string      `json:"task_types,omitempty" maxItems:"50" doc:"Only the events of tasks of these types (workflow: workflows' workflow_status_update events)."`
	EventTypes []string      `json:"event_types,omitempty" maxItems:"50" doc:"Only events of these types (e.g. generation_status_update, generation_progress_update)."`
	Statuses   []task.Status `json:"statuses,omitempty" maxItems:"10" doc:"Only the status events that report these task statuses."`
	Progress   bool          `json:"progress,omitempty" doc:"Send progress events too; by default only status events are sent."`
}

// WebhookEndpoint is a subscription: every event matching its filter is
// delivered to its URL, signed with its own secret.
type WebhookEndpoint struct {
	ID          string                `json:"id" format:"uuid"`
	TenantID    string                `json:"tenant_id" doc:"The tenant whose events it receives; empty (admin endpoints only) for every tenant's."`
	URL         string                `json:"url"`
	Description string                `json:"description"`
	Filter      WebhookEndpointFilter `json:"filter"`
	Enabled     bool                  `json:"enabled" doc:"A disabled endpoint gets no new deliveries."`
	// PreviousSecretExpiresAt is when a rotation's overlap ends.
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at" doc:"Until then the secret replaced by the last rotation signs too (a second signature in webhook-signature); null when it no longer does."`
	CreatedAt               time.Time  `json:"created_at"`
	UpdatedAt               time.Time  `json:"updated_at"`
}

// WebhookEndpointWithSecret is an endpoint with its signing secret, shown
// once: when it is created and when its secret is rotated.
type WebhookEndpointWithSecret struct {
	WebhookEndpoint
	Secret string `json:"secret" doc:"The signing secret (Standard Webhooks, whsec_…). It is shown only now: keep it."`
}

type endpointCreateBody struct {
	URL         string                 `json:"url" minLength:"1" maxLength:"2048" doc:"HTTP(S) URL that receives the events."`
	Description string                 `json:"description,omitempty" maxLength:"500"`
	Filter      *WebhookEndpointFilter `json:"filter,omitempty" doc:"Which events it receives; absent: every status event."`
	Enabled     *bool                  `json:"enabled,omitempty" doc:"Default true."`
	TenantID    string                 `json:"tenant_id,omitempty" maxLength:"256" doc:"The tenant whose events it receives. A tenant key may leave it out or name its own; an admin key that leaves it out makes an endpoint for every tenant's events."`
}

type endpointCreateInput struct {
	Body endpointCreateBody
}

type endpointUpdateInput struct {
	ID   string `path:"id" doc:"The endpoint id."`
	Body struct {
		URL         *string                `json:"url,omitempty" minLength:"1" maxLength:"2048"`
		Description *string                `json:"description,omitempty" maxLength:"500"`
		Filter      *WebhookEndpointFilter `json:"filter,omitempty" doc:"Replaces the filter."`
		Enabled     *bool                  `json:"enabled,omitempty"`
	}
}

type endpointIDInput struct {
	ID string `path:"id" doc:"The endpoint id."`
}

type endpointRotateInput struct {
	ID   string `path:"id" doc:"The endpoint id."`
	Body *struct {
		OverlapSeconds *int `json:"overlap_seconds,omitempty" minimum:"0" maximum:"604800" doc:"How long the replaced secret keeps signing too. Default: 86400 (a day); 0 stops it at once."`
	} `required:"false"`
}

type endpointOutput struct {
	Body WebhookEndpoint
}

type endpointSecretOutput struct {
	Body WebhookEndpointWithSecret
}

type endpointListOutput struct {
	Body struct {
		Endpoints []WebhookEndpoint `json:"endpoints"`
	}
}

// defaultOverlap is how long a rotated-out secret keeps signing.
const defaultOverlap = 24 * time.Hour

func (s *Server) registerEndpointRoutes() {
	tags := []string{"Webhooks"}
	const base = "/api/v1/webhooks/endpoints"
	huma.Register(s.api, huma.Operation{
		OperationID: "create-webhook-endpoint", Method: http.MethodPost, Path: base, Tags: tags,
		Summary: "Subscribe a URL to events",
		Description: "Every event matching the filter (task types, event types, statuses, progress) is delivered to the URL through the " +
			"delivery ledger, with retries, signed per Standard Webhooks with the endpoint's own secret, which this answer shows once. " +
			"A tenant key's endpoint receives only its tenant's events.",
		Security: bearer, DefaultStatus: http.StatusCreated, Errors: []int{401, 403, 422},
	}, s.createEndpoint)
	huma.Register(s.api, huma.Operation{
		OperationID: "list-webhook-endpoints", Method: http.MethodGet, Path: base, Tags: tags,
		Summary: "List webhook endpoints", Description: "Oldest first; a tenant key sees only its own.",
		Security: bearer, Errors: []int{401},
	}, func(ctx context.Context, _ *struct{}) (*endpointListOutput, error) {
		eps, err := s.deps.Store.ListEndpoints(ctx, principalFrom(ctx).scope())
		if err != nil {
			return nil, s.problem(err, "webhook endpoints")
		}
		out := &endpointListOutput{}
		out.Body.Endpoints = make([]WebhookEndpoint, len(eps))
		for i := range eps {
			out.Body.Endpoints[i] = endpointJSON(&eps[i])
		}
		return out, nil
	})
	huma.Register(s.api, huma.Operation{
		OperationID: "get-webhook-endpoint", Method: http.MethodGet, Path: base + "/{id}", Tags: tags,
		Summary: "Get a webhook endpoint", Security: bearer, Errors: []int{401, 404},
	}, func(ctx context.Context, in *endpointIDInput) (*endpointOutput, error) {
		id, err := parseEndpointID(in.ID)
		if err != nil {
			return nil, err
		}
		ep, err := s.deps.Store.GetEndpoint(ctx, id, principalFrom(ctx).scope())
		if err != nil {
			return nil, s.endpointProblem(err)
		}
		return &endpointOutput{Body: endpointJSON(ep)}, nil
	})
	huma.Register(s.api, huma.Operation{
		OperationID: "update-webhook-endpoint", Method: http.MethodPatch, Path: base + "/{id}", Tags: tags,
		Summary:     "Change a webhook endpoint's URL, description, filter or enabled flag",
		Description: "An absent field is left unchanged; a filter replaces the whole filter. Deliveries already made keep their URL.",
		Security:    bearer, Errors: []int{401, 404, 422},
	}, s.updateEndpoint)
	huma.Register(s.api, huma.Operation{
		OperationID: "delete-webhook-endpoint", Method: http.MethodDelete, Path: base + "/{id}", Tags: tags,
		Summary:     "Delete a webhook endpoint",
		Description: "Its pending deliveries are stopped; its deliveries stay in the ledger.",
		Security:    bearer, DefaultStatus: http.StatusNoContent, Errors: []int{401, 404},
	}, func(ctx context.Context, in *endpointIDInput) (*deleteOutput, error) {
		id, err := parseEndpointID(in.ID)
		if err != nil {
			return nil, err
		}
		if err := s.deps.Store.DeleteEndpoint(ctx, id, principalFrom(ctx).scope()); err != nil {
			return nil, s.endpointProblem(err)
		}
		return &deleteOutput{}, nil
	})
	huma.Register(s.api, huma.Operation{
		OperationID: "rotate-webhook-endpoint-secret", Method: http.MethodPost, Path: base + "/{id}/rotate", Tags: tags,
		Summary: "Give a webhook endpoint a new signing secret",
		Description: "Answers the new secret, once. During the overlap (overlap_seconds, default a day) requests carry two signatures " +
			"in webhook-signature, space-separated, as Standard Webhooks allows: the new secret's and the replaced one's, so the receiver " +
			"can switch secrets at any time within it.",
		Security: bearer, Errors: []int{401, 404, 422},
	}, func(ctx context.Context, in *endpointRotateInput) (*endpointSecretOutput, error) {
		id, err := parseEndpointID(in.ID)
		if err != nil {
			return nil, err
		}
		overlap := defaultOverlap
		if in.Body != nil && in.Body.OverlapSeconds != nil {
			overlap = time.Duration(*in.Body.OverlapSeconds) * time.Second
		}
		secret := webhook.NewSecret()
		var until time.Time
		if overlap > 0 {
			until = task.Now().Add(overlap)
		}
		ep, err := s.deps.Store.RotateEndpointSecret(ctx, id, principalFrom(ctx).scope(), secret, until)
		if err != nil {
			return nil, s.endpointProblem(err)
		}
		s.log.Info("webhook endpoint secret rotated", "endpoint_id", ep.ID, "overlap", overlap)
		return &endpointSecretOutput{Body: WebhookEndpointWithSecret{WebhookEndpoint: endpointJSON(ep), Secret: secret}}, nil
	})
}

func (s *Server) createEndpoint(ctx context.Context, in *endpointCreateInput) (*endpointSecretOutput, error) {
	p := principalFrom(ctx)
	if !p.admin && p.tenantID == "" {
		return nil, huma.Error403Forbidden("a key without a tenant cannot manage webhook endpoints")
	}
	if d := foreignTenant(p, "body.tenant_id", in.Body.TenantID); d != nil {
		return nil, huma.Error422UnprocessableEntity("validation failed", d)
	}
	tenant := in.Body.TenantID
	if !p.admin {
		tenant = p.tenantID
	}
	var filter store.EndpointFilter
	if in.Body.Filter != nil {
		f, err := s.endpointFilter(in.Body.Filter)
		if err != nil {
			return nil, err
		}
		filter = f
	}
	if err := checkEndpointURL(in.Body.URL); err != nil {
		return nil, err
	}
	secret := webhook.NewSecret()
	ep := &store.Endpoint{
		ID: uuid.New(), TenantID: tenant, URL: in.Body.URL, Destination: webhook.Destination(in.Body.URL),
		Description: in.Body.Description, Filter: filter, Enabled: in.Body.Enabled == nil || *in.Body.Enabled,
		Secret: secret, CreatedAt: task.Now(),
	}
	if err := s.deps.Store.CreateEndpoint(ctx, ep); err != nil {
		return nil, s.endpointProblem(err)
	}
	s.log.Info("webhook endpoint created", "endpoint_id", ep.ID, "tenant_id", ep.TenantID, "destination", ep.Destination)
	return &endpointSecretOutput{Body: WebhookEndpointWithSecret{WebhookEndpoint: endpointJSON(ep), Secret: secret}}, nil
}

func (s *Server) updateEndpoint(ctx context.Context, in *endpointUpdateInput) (*endpointOutput, error) {
	id, err := parseEndpointID(in.ID)
	if err != nil {
		return nil, err
	}
	var pt store.EndpointPatch
	if u := in.Body.URL; u != nil {
		if err := checkEndpointURL(*u); err != nil {
			return nil, err
		}
		dest := webhook.Destination(*u)
		pt.URL, pt.Destination = u, &dest
	}
	if in.Body.Filter != nil {
		f, err := s.endpointFilter(in.Body.Filter)
		if err != nil {
			return nil, err
		}
		pt.Filter = &f
	}
	pt.Description, pt.Enabled = in.Body.Description, in.Body.Enabled
	ep, err := s.deps.Store.UpdateEndpoint(ctx, id, principalFrom(ctx).scope(), pt)
	if err != nil {
		return nil, s.endpointProblem(err)
	}
	return &endpointOutput{Body: endpointJSON(ep)}, nil
}

// endpointFilter checks a filter: task types must be registered (or be
// workflow, the task type of workflows' events).
func (s *Server) endpointFilter(f *WebhookEndpointFilter) (store.EndpointFilter, error) {
	for _, t := range withoutWorkflows(f.TaskTypes) {
		if _, ok := s.types[t]; !ok {
			return store.EndpointFilter{}, huma.Error422UnprocessableEntity("validation failed", &huma.ErrorDetail{
				Location: "body.filter.task_types", Message: "not a task type of this server", Value: t,
			})
		}
	}
	out := store.EndpointFilter{TaskTypes: f.TaskTypes, EventTypes: f.EventTypes, Progress: f.Progress}
	for _, st := range f.Statuses {
		out.Statuses = append(out.Statuses, string(st))
	}
	return out, nil
}

// checkEndpointURL checks an endpoint's URL as a task's webhook_url is
// checked; where it may connect is checked at delivery time.
func checkEndpointURL(raw string) error {
	if err := checkWebhookURL(raw); err != nil {
		var fe *registry.FieldError
		if errors.As(err, &fe) {
			return huma.Error422UnprocessableEntity("validation failed", &huma.ErrorDetail{
				Location: "body.url", Message: fe.Message, Value: raw,
			})
		}
		return err
	}
	return nil
}

// parseEndpointID parses an endpoint id; anything else names no endpoint.
func parseEndpointID(raw string) (uuid.UUID, error) {
	id, ok := canonicalUUID(raw)
	if !ok {
		return uuid.Nil, huma.Error404NotFound("webhook endpoint not found: " + quoteName(raw) + " is not an endpoint id")
	}
	return id, nil
}

func (s *Server) endpointProblem(err error) error {
	if errors.Is(err, store.ErrEndpointNotFound) {
		return huma.Error404NotFound("webhook endpoint not found")
	}
	return s.problem(err, "webhook endpoint")
}

func endpointJSON(ep *store.Endpoint) WebhookEndpoint {
	out := WebhookEndpoint{
		ID: ep.ID.String(), TenantID: ep.TenantID, URL: ep.URL, Description: ep.Description, Enabled: ep.Enabled,
		Filter:    WebhookEndpointFilter{TaskTypes: ep.Filter.TaskTypes, EventTypes: ep.Filter.EventTypes, Progress: ep.Filter.Progress},
		CreatedAt: ep.CreatedAt, UpdatedAt: ep.UpdatedAt,
	}
	for _, st := range ep.Filter.Statuses {
		out.Filter.Statuses = append(out.Filter.Statuses, task.Status(st))
	}
	if len(ep.Secrets(task.Now())) > 1 {
		out.PreviousSecretExpiresAt = ep.PreviousUntil
	}
	return out
}
