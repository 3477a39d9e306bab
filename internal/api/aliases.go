package api

import (
	"context"
	"net/http"
	"strings"

	"github.com/danielgtaylor/huma/v2"
)

// aliasRoutes are the routes a type with a route alias is also served at,
// as a former API served it (the original's /api/v1/training/…).
func aliasRoutes(alias string) []string {
	base := "/api/v1/" + alias
	return []string{"POST " + base + "/", "GET " + base + "/{task_id}", "POST " + base + "/{task_id}/cancel"}
}

// registerAliasRoutes serves, for every type with a route alias, create,
// get and cancel under /api/v1/{alias}: the typed routes under the former
// API's paths, answering in the type's public schema. A task of another
// type is not found there.
func (s *Server) registerAliasRoutes() {
	for _, ts := range s.ordered {
		alias := ts.def.RouteAlias
		if alias == "" {
			continue
		}
		ts, base, op := ts, "/api/v1/"+alias, strings.ReplaceAll(alias, "_", "-")
		tags := []string{"Task types"}
		huma.Register(s.api, huma.Operation{
			OperationID: "create-" + op + "-alias", Method: http.MethodPost, Path: base + "/", Tags: tags,
			Summary:     "Create a " + ts.def.Name + " task (the original's route)",
			Description: "The same as POST /api/v1/tasks/" + ts.def.Name + ", at the path the original API served. " + ts.def.Description,
			Security:    bearer, MaxBodyBytes: s.cfg.MaxBodyBytes, DefaultStatus: http.StatusCreated,
			RequestBody: &huma.RequestBody{Required: true, Content: jsonBody(ts.createRef)},
			Responses: map[string]*huma.Response{
				"200": {Description: "The existing task for this Idempotency-Key.", Content: jsonBody(ts.publicRef)},
				"201": {Description: "The new task.", Content: jsonBody(ts.publicRef)},
			},
			Errors: []int{400, 401, 409, 413, 415, 422},
		}, func(ctx context.Context, in *createInput) (*taskOutput, error) {
			return s.create(ctx, ts, in)
		})
		huma.Register(s.api, huma.Operation{
			OperationID: "get-" + op + "-alias", Method: http.MethodGet, Path: base + "/{task_id}", Tags: tags,
			Summary:     "Get a " + ts.def.Name + " task (the original's route)",
			Description: "The same as GET /api/v1/tasks/" + ts.def.Name + "/{task_id}: 404 when the task has another type.",
			Security:    bearer, Errors: []int{401, 404},
			Responses: map[string]*huma.Response{"200": {Description: "The task.", Content: jsonBody(ts.publicRef)}},
		}, func(ctx context.Context, in *idInput) (*taskOutput, error) {
			rec, err := s.loadOfType(ctx, in.TaskID, ts.def.Name)
			if err != nil {
				return nil, err
			}
			return s.output(rec, http.StatusOK)
		})
		huma.Register(s.api, huma.Operation{
			OperationID: "cancel-" + op + "-alias", Method: http.MethodPost, Path: base + "/{task_id}/cancel", Tags: tags,
			Summary:     "Cancel a " + ts.def.Name + " task (the original's route)",
			Description: "The same as POST /api/v1/tasks/{task_id}/cancel for a task of this type: 404 when the task has another type, 409 when it is finished.",
			Security:    bearer, Errors: []int{401, 404, 409},
			Responses: map[string]*huma.Response{"200": {Description: "The cancelled task.", Content: jsonBody(ts.publicRef)}},
		}, func(ctx context.Context, in *idInput) (*taskOutput, error) {
			if _, err := s.loadOfType(ctx, in.TaskID, ts.def.Name); err != nil {
				return nil, err
			}
			return s.cancel(ctx, in)
		})
	}
}
