package api

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

type listInput struct {
	TaskType       []string      `query:"task_type,explode" maxItems:"20" doc:"Only tasks of these types (repeat the parameter for several)."`
	Status         []task.Status `query:"status,explode" maxItems:"5" doc:"Only tasks in these statuses (repeat the parameter for several)."`
	QueueName      []string      `query:"queue_name,explode" maxItems:"20" doc:"Only tasks in these queues (repeat the parameter for several)."`
	OriginTenantID string        `query:"origin_tenant_id" maxLength:"256" doc:"Only tasks of this tenant."`
	CreatedAfter   time.Time     `query:"created_after" doc:"Only tasks created at or after this time (RFC 3339)."`
	CreatedBefore  time.Time     `query:"created_before" doc:"Only tasks created before this time (RFC 3339)."`
	Limit          int           `query:"limit" minimum:"1" maximum:"500" doc:"Page size. Default: 50."`
	Cursor         string        `query:"cursor" maxLength:"512" doc:"The next_cursor of the previous page."`
}

type listBody struct {
	Items      []json.RawMessage `json:"items"`
	NextCursor *string           `json:"next_cursor"`
}

type listOutput struct {
	Body listBody
}

func (s *Server) registerListRoute() {
	schema := &huma.Schema{
		Type: huma.TypeObject,
		Properties: map[string]*huma.Schema{
			"items":       {Type: huma.TypeArray, Items: s.publicUnion},
			"next_cursor": {Type: huma.TypeString, Nullable: true, Description: "Pass as `cursor` for the next page; null on the last page."},
		},
		Required: []string{"items", "next_cursor"},
	}
	huma.Register(s.api, huma.Operation{
		OperationID: "list-tasks", Method: http.MethodGet, Path: "/api/v1/tasks/", Tags: []string{"Tasks"},
		Summary: "List tasks, newest first", Security: bearer,
		Responses: map[string]*huma.Response{"200": {Description: "One page of tasks.", Content: jsonBody(schema)}},
		Errors:    []int{401, 422},
	}, func(ctx context.Context, in *listInput) (*listOutput, error) {
		if bad := s.unknownTypes(in.TaskType); bad != nil {
			return nil, huma.Error422UnprocessableEntity("validation failed", bad)
		}
		p := principalFrom(ctx)
		if d := foreignTenant(p, "query.origin_tenant_id", in.OriginTenantID); d != nil {
			return nil, huma.Error422UnprocessableEntity("validation failed", d)
		}
		page, err := s.deps.Store.ListTasks(ctx, store.ListFilter{
			Scope: p.scope(), TaskTypes: in.TaskType, Statuses: in.Status,
			QueueNames: in.QueueName, TenantID: in.OriginTenantID,
			CreatedAfter: in.CreatedAfter, CreatedBefore: in.CreatedBefore,
			Limit: in.Limit, Cursor: in.Cursor,
		})
		if err != nil {
			return nil, s.problem(err, "tasks")
		}
		out := &listOutput{Body: listBody{Items: make([]json.RawMessage, 0, len(page.Records))}}
		// The page ends early once its items would pass MaxPageBytes
		// (always with at least one item); its cursor continues after
		// the last item sent.
		size := 0
		for i, rec := range page.Records {
			item, err := publicJSON(rec)
			if err != nil {
				return nil, s.problem(err, "tasks")
			}
			if i > 0 && size+len(item) > s.cfg.MaxPageBytes {
				page.NextCursor = store.CursorAfter(page.Records[i-1].Task)
				break
			}
			size += len(item) + 1
			out.Body.Items = append(out.Body.Items, item)
		}
		if page.NextCursor != "" {
			out.Body.NextCursor = &page.NextCursor
		}
		return out, nil
	})
}

// unknownTypes names the first value of a task_type filter that is not a
// registered type (nil when all are).
func (s *Server) unknownTypes(names []string) *huma.ErrorDetail {
	for _, n := range names {
		if _, ok := s.types[n]; !ok {
			return &huma.ErrorDetail{Location: "query.task_type", Message: "unknown task type", Value: n}
		}
	}
	return nil
}
