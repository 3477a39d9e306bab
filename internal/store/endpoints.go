package store

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/event"
)

// Endpoints is the store's side of webhook endpoints: subscriptions that
// get a delivery, in the ledger, for every event matching their filter,
// written in the event's transaction, and the ledger across tasks.
type Endpoints interface {
	// CreateEndpoint stores a new endpoint (ID, CreatedAt and Secret set
	// by the caller).
	CreateEndpoint(ctx context.Context, ep *Endpoint) error

	// GetEndpoint loads an endpoint; ErrEndpointNotFound when it is not in
	// scope (a tenant sees only its own).
	GetEndpoint(ctx context.Context, id uuid.UUID, scope Scope) (*Endpoint, error)

	// ListEndpoints lists the endpoints in scope, oldest first.
	ListEndpoints(ctx context.Context, scope Scope) ([]Endpoint, error)

	// UpdateEndpoint applies a patch and returns the endpoint as written.
	UpdateEndpoint(ctx context.Context, id uuid.UUID, scope Scope, p EndpointPatch) (*Endpoint, error)

	// RotateEndpointSecret makes secret the endpoint's signing secret;
	// the secret it replaces keeps signing too until overlapUntil (not at
	// all when it is not after now).
	RotateEndpointSecret(ctx context.Context, id uuid.UUID, scope Scope, secret string, overlapUntil time.Time) (*Endpoint, error)

	// DeleteEndpoint deletes an endpoint. Its pending deliveries are
	// stopped; its deliveries stay in the ledger without it.
	DeleteEndpoint(ctx context.Context, id uuid.UUID, scope Scope) error

	// ListDeliveryPage lists deliveries across tasks, newest first, one
	// page at a time (without their attempts).
	ListDeliveryPage(ctx context.Context, f DeliveryFilter) (DeliveryPage, error)

	// RedeliverMany redelivers (as Redeliver does) up to f.Limit
	// deliveries matching f, or f.IDs, oldest first, in one transaction,
	// and returns their ids. Ids out of scope are left out.
	RedeliverMany(ctx context.Context, f DeliveryFilter) ([]int64, error)
}

// Endpoint is a webhook subscription.
type Endpoint struct {
	ID uuid.UUID
	// TenantID owns the endpoint and limits it to the tenant's events;
	// "" (admin endpoints only) receives every tenant's events.
	TenantID string
	URL      string
	// Destination groups its deliveries (see Delivery.Destination).
	Destination string
	Description string
	Filter      EndpointFilter
	Enabled     bool
	// Secret signs its deliveries ("whsec_…").
	Secret string
	// PreviousSecret signs too until PreviousUntil (a rotation's
	// overlap).
	PreviousSecret string
	PreviousUntil  *time.Time
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// Secrets are the secrets that sign a request at now: the current one,
// then the previous one while the overlap lasts.
func (ep *Endpoint) Secrets(now time.Time) []string {
	out := []string{ep.Secret}
	if ep.PreviousSecret != "" && ep.PreviousUntil != nil && now.Before(*ep.PreviousUntil) {
		out = append(out, ep.PreviousSecret)
	}
	return out
}

// EndpointFilter chooses the events an endpoint receives. An empty list
// does not filter.
type EndpointFilter struct {
	// TaskTypes lists the task types whose events are sent.
	TaskTypes []string `json:"task_types,omitempty"`
	// EventTypes lists the event types sent (e.g.
	// "generation_status_update").
	EventTypes []string `json:"event_types,omitempty"`
	// Statuses lists the task statuses whose status events are sent.
	Statuses []string `json:"statuses,omitempty"`
	// Progress sends progress events too (by default only status
	// events are sent).
	Progress bool `json:"progress,omitempty"`
}

// Matches reports whether the filter wants e.
func (f EndpointFilter) Matches(e event.Event) bool {
	if len(f.TaskTypes) > 0 && !slices.Contains(f.TaskTypes, e.TaskType) {
		return false
	}
	if len(f.EventTypes) > 0 && !slices.Contains(f.EventTypes, e.EventType) {
		return false
	}
	if e.Kind == event.KindProgress {
		return f.Progress
	}
	return len(f.Statuses) == 0 || slices.Contains(f.Statuses, string(e.Status))
}

// Receives reports whether an endpoint gets the events of tenant.
func (ep *Endpoint) Receives(tenant string) bool {
	return ep.TenantID == "" || ep.TenantID == tenant
}

// EndpointPatch changes an endpoint; nil fields are left as they are.
type EndpointPatch struct {
	URL         *string
	Destination *string
	Description *string
	Filter      *EndpointFilter
	Enabled     *bool
}

// DeliveryFilter selects deliveries across tasks (ListDeliveryPage,
// RedeliverMany).
type DeliveryFilter struct {
	Scope Scope
	// Statuses keeps deliveries in these statuses (empty: any).
	Statuses []DeliveryStatus
	// EndpointID keeps the deliveries of one endpoint (uuid.Nil: any).
	EndpointID uuid.UUID
	// TaskID keeps the deliveries of one task (uuid.Nil: any).
	TaskID uuid.UUID
	// EventTypes keeps deliveries of these event types (empty: any).
	EventTypes []string
	// CreatedAfter (inclusive) and CreatedBefore (exclusive) bound the
	// delivery's creation (zero: unbounded).
	CreatedAfter, CreatedBefore time.Time
	// IDs keeps these deliveries only (RedeliverMany).
	IDs []int64
	// Cursor continues a list (DeliveryPage.NextCursor).
	Cursor string
	// Limit bounds a page or a redelivery (the store caps it).
	Limit int
}

// DeliveryPage is one page of ListDeliveryPage.
type DeliveryPage struct {
	Deliveries []Delivery
	// NextCursor continues the list; "" on the last page.
	NextCursor string
}

// ErrEndpointNotFound means no endpoint with that id is in scope.
var ErrEndpointNotFound = errors.New("webhook endpoint not found")
