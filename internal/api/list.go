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
	TaskType       string    `query:"task_type" maxLength:"64" doc:"Only tasks of this type."`
	Status         string    `query:"status" enum:"pending,executing,completed,failed,cancelled" doc:"Only tasks in this status."`
	QueueName      string    `query:"queue_name" maxLength:"64" doc:"Only tasks in this queue."`
	OriginTenantID string    `query:"origin_tenant_id" maxLength:"256" doc:"Only tasks of this tenant."`
	CreatedAfter   time.Time `query:"created_after" doc:"Only tasks created at or after this time (RFC 3339)."`
	CreatedBefore  time.Time `query:"created_before" doc:"Only tasks created before this time (RFC 3339)."`
	Limit          int       `query:"limit" minimum:"1" maximum:"500" default:"50" doc:"Page size."`
	Cursor         string    `query:"cursor" maxLength:"512" doc:"The next_cursor of the previous page."`
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
		if in.TaskType != "" {
			if _, ok := s.types[in.TaskType]; !ok {
				return nil, huma.Error422UnprocessableEntity("validation failed", &huma.ErrorDetail{
					Location: "query.task_type", Message: "unknown task type", Value: in.TaskType,
				})
			}
		}
		page, err := s.deps.Store.ListTasks(ctx, store.ListFilter{
			Scope: principalFrom(ctx).scope(), TaskType: in.TaskType, Status: task.Status(in.Status),
			QueueName: in.QueueName, TenantID: in.OriginTenantID,
			CreatedAfter: in.CreatedAfter, CreatedBefore: in.CreatedBefore,
			Limit: in.Limit, Cursor: in.Cursor,
		})
		if err != nil {
			return nil, s.problem(err, "tasks")
		}
		out := &listOutput{Body: listBody{Items: make([]json.RawMessage, len(page.Records))}}
		for i, rec := range page.Records {
			if out.Body.Items[i], err = publicJSON(rec); err != nil {
				return nil, s.problem(err, "tasks")
			}
		}
		if page.NextCursor != "" {
			out.Body.NextCursor = &page.NextCursor
		}
		return out, nil
	})
}
