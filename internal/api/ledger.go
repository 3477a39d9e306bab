package api

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/store"
)

// deliveryStatuses are the statuses a delivery filter may name.
var deliveryStatuses = []string{"pending", "delivered", "failed", "stopped"}

type deliveryListInput struct {
	Status        []string  `query:"status,explode" maxItems:"4" doc:"Only deliveries in these statuses: pending, delivered, failed, stopped (repeat the parameter for several)."`
	EndpointID    string    `query:"endpoint_id" format:"uuid" doc:"Only the deliveries of this webhook endpoint."`
	TaskID        string    `query:"task_id" format:"uuid" doc:"Only the deliveries of this task."`
	EventType     []string  `query:"event_type,explode" maxItems:"20" doc:"Only deliveries of these event types."`
	CreatedAfter  time.Time `query:"created_after" doc:"Only deliveries made at or after this time (RFC 3339)."`
	CreatedBefore time.Time `query:"created_before" doc:"Only deliveries made before this time (RFC 3339)."`
	Limit         int       `query:"limit" minimum:"1" maximum:"500" doc:"Page size. Default: 50."`
	Cursor        string    `query:"cursor" maxLength:"512" doc:"The next_cursor of the previous page."`
}

type deliveryPageOutput struct {
	Body struct {
		Deliveries []WebhookDelivery `json:"deliveries" doc:"Newest first, without their attempts (GET /api/v1/tasks/{task_id}/webhooks has them)."`
		NextCursor string            `json:"next_cursor,omitempty" doc:"Pass as cursor for the next page; absent on the last page."`
	}
}

// DeliveryFilter selects deliveries across tasks for a bulk redelivery.
type DeliveryFilter struct {
	Status        []string   `json:"status,omitempty" maxItems:"4" doc:"Statuses: pending, delivered, failed, stopped. Default: failed."`
	EndpointID    string     `json:"endpoint_id,omitempty" format:"uuid" doc:"Only the deliveries of this webhook endpoint."`
	TaskID        string     `json:"task_id,omitempty" format:"uuid" doc:"Only the deliveries of this task."`
	EventType     []string   `json:"event_type,omitempty" maxItems:"20" doc:"Only deliveries of these event types."`
	CreatedAfter  *time.Time `json:"created_after,omitempty" doc:"Only deliveries made at or after this time."`
	CreatedBefore *time.Time `json:"created_before,omitempty" doc:"Only deliveries made before this time."`
}

type redeliverManyInput struct {
	Body struct {
		IDs    []int64         `json:"ids,omitempty" maxItems:"1000" doc:"The deliveries to send again (give ids or filter, not both)."`
		Filter *DeliveryFilter `json:"filter,omitempty" doc:"The deliveries to send again, oldest first, up to limit."`
		Limit  int             `json:"limit,omitempty" minimum:"1" maximum:"1000" doc:"The most deliveries a filter redelivers. Default and maximum: 1000; call again for more."`
	}
}

type redeliverManyOutput struct {
	Body struct {
		Redelivered int     `json:"redelivered" doc:"How many deliveries are pending and due now."`
		IDs         []int64 `json:"ids" doc:"Their ids. Ids asked for that are not in scope are left out."`
	}
}

func (s *Server) registerLedgerRoutes() {
	tags := []string{"Webhooks"}
	huma.Register(s.api, huma.Operation{
		OperationID: "list-webhook-deliveries", Method: http.MethodGet, Path: "/api/v1/webhooks/deliveries", Tags: tags,
		Summary: "List webhook deliveries across tasks",
		Description: "The delivery ledger across every task, newest first, one page at a time: e.g. `?status=failed` for every delivery " +
			"that ran out of attempts. A tenant key sees its own tasks' deliveries to their own URLs and to its own endpoints.",
		Security: bearer, Errors: []int{401, 422},
	}, func(ctx context.Context, in *deliveryListInput) (*deliveryPageOutput, error) {
		f, err := deliveryFilter(DeliveryFilter{Status: in.Status, EndpointID: in.EndpointID, TaskID: in.TaskID, EventType: in.EventType,
			CreatedAfter: timeOrNil(in.CreatedAfter), CreatedBefore: timeOrNil(in.CreatedBefore)}, "query.")
		if err != nil {
			return nil, err
		}
		f.Scope, f.Cursor, f.Limit = principalFrom(ctx).scope(), in.Cursor, in.Limit
		page, err := s.deps.Store.ListDeliveryPage(ctx, f)
		if err != nil {
			return nil, s.problem(err, "webhook deliveries")
		}
		out := &deliveryPageOutput{}
		out.Body.NextCursor = page.NextCursor
		out.Body.Deliveries = make([]WebhookDelivery, len(page.Deliveries))
		for i := range page.Deliveries {
			out.Body.Deliveries[i] = deliveryJSON(&page.Deliveries[i])
		}
		return out, nil
	})
	huma.Register(s.api, huma.Operation{
		OperationID: "redeliver-webhooks", Method: http.MethodPost, Path: "/api/v1/webhooks/deliveries/redeliver", Tags: tags,
		Summary: "Send many webhook deliveries again",
		Description: "Redelivers the deliveries named by ids, or those matching filter (failed ones by default), as the single redelivery " +
			"does: pending and due now, with a fresh attempt budget and retry window. At most 1000 per call.",
		Security: bearer, Errors: []int{401, 422},
	}, func(ctx context.Context, in *redeliverManyInput) (*redeliverManyOutput, error) {
		var f store.DeliveryFilter
		switch {
		case len(in.Body.IDs) > 0 && in.Body.Filter != nil, len(in.Body.IDs) == 0 && in.Body.Filter == nil:
			return nil, huma.Error422UnprocessableEntity("validation failed", &huma.ErrorDetail{
				Location: "body", Message: "give either ids or filter",
			})
		case in.Body.Filter != nil:
			df := *in.Body.Filter
			if len(df.Status) == 0 {
				df.Status = []string{"failed"}
			}
			var err error
			if f, err = deliveryFilter(df, "body.filter."); err != nil {
				return nil, err
			}
			f.Limit = in.Body.Limit
		default:
			for i, id := range in.Body.IDs {
				if id <= 0 {
					return nil, huma.Error422UnprocessableEntity("validation failed", &huma.ErrorDetail{
						Location: fmt.Sprintf("body.ids[%d]", i), Message: "not a delivery id", Value: id,
					})
				}
			}
			f.IDs = in.Body.IDs
		}
		f.Scope = principalFrom(ctx).scope()
		ids, err := s.deps.Store.RedeliverMany(ctx, f)
		if err != nil {
			return nil, s.problem(err, "webhook deliveries")
		}
		out := &redeliverManyOutput{}
		out.Body.Redelivered, out.Body.IDs = len(ids), ids
		if out.Body.IDs == nil {
			out.Body.IDs = []int64{}
		}
		return out, nil
	})
}

// deliveryFilter checks a filter given at location ("query." or
// "body.filter.") and converts it.
func deliveryFilter(in DeliveryFilter, location string) (store.DeliveryFilter, error) {
	var f store.DeliveryFilter
	for _, st := range in.Status {
		if !slices.Contains(deliveryStatuses, st) {
			return f, huma.Error422UnprocessableEntity("validation failed", &huma.ErrorDetail{
				Location: location + "status", Message: "must be one of pending, delivered, failed, stopped", Value: st,
			})
		}
		f.Statuses = append(f.Statuses, store.DeliveryStatus(st))
	}
	for _, id := range []struct {
		name string
		raw  string
		to   *uuid.UUID
	}{{"endpoint_id", in.EndpointID, &f.EndpointID}, {"task_id", in.TaskID, &f.TaskID}} {
		if id.raw == "" {
			continue
		}
		u, ok := canonicalUUID(id.raw)
		if !ok {
			return f, huma.Error422UnprocessableEntity("validation failed", &huma.ErrorDetail{
				Location: location + id.name, Message: "must be a lowercase UUID", Value: id.raw,
			})
		}
		*id.to = u
	}
	f.EventTypes = in.EventType
	if in.CreatedAfter != nil {
		f.CreatedAfter = *in.CreatedAfter
	}
	if in.CreatedBefore != nil {
		f.CreatedBefore = *in.CreatedBefore
	}
	return f, nil
}

// timeOrNil is t, or nil when t is zero.
func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
