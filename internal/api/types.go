package api

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/computeserver/compute/internal/registry"
)

type taskTypeInfo struct {
	Name            string        `json:"name"`
	Title           string        `json:"title"`
	Description     string        `json:"description"`
	DefaultProvider string        `json:"default_provider"`
	Providers       []string      `json:"providers"`
	DefaultQueue    string        `json:"default_queue"`
	MaxAttempts     int           `json:"max_attempts"`
	TimeoutSeconds  int           `json:"timeout_seconds"`
	AtMostOnce      bool          `json:"at_most_once" doc:"A task of this type never runs twice: when its worker dies mid-run it fails with category lost instead of being recovered."`
	Routes          []string      `json:"routes"`
	Schemas         typeSchemaSet `json:"schemas"`
}

type typeSchemaSet struct {
	Create jsonSchemaDoc `json:"create" doc:"The body of POST /api/v1/tasks/ for this type."`
	Public jsonSchemaDoc `json:"public" doc:"A task of this type as the API returns it."`
	Update jsonSchemaDoc `json:"update" doc:"The PATCH body this type accepts."`
}

type typesOutput struct {
	Body struct {
		Types []taskTypeInfo `json:"types"`
	}
}

func (s *Server) registerTypesRoute() {
	huma.Register(s.api, huma.Operation{
		OperationID: "list-task-types", Method: http.MethodGet, Path: "/api/v1/task-types", Tags: []string{"Task types"},
		Summary: "The registered task types with their JSON Schemas", Security: bearer, Errors: []int{401},
	}, func(ctx context.Context, _ *struct{}) (*typesOutput, error) {
		out := &typesOutput{}
		out.Body.Types = make([]taskTypeInfo, 0, len(s.ordered))
		reg := s.api.OpenAPI().Components.Schemas
		for _, ts := range s.ordered {
			d := ts.def
			var set [3]jsonSchemaDoc
			for i, sc := range []*huma.Schema{ts.create, ts.public, ts.update} {
				doc, err := standalone(reg, sc)
				if err != nil {
					return nil, s.problem(err, "task types")
				}
				set[i] = doc
			}
			out.Body.Types = append(out.Body.Types, taskTypeInfo{
				Name: d.Name, Title: d.Title, Description: d.Description,
				DefaultProvider: s.defaultProvider(d), Providers: s.providers(d), DefaultQueue: d.DefaultQueue,
				MaxAttempts: d.MaxAttempts, TimeoutSeconds: int(d.Timeout.Seconds()), AtMostOnce: d.AtMostOnce,
				Routes:  routesOf(d.Name, d.RouteAlias),
				Schemas: typeSchemaSet{Create: set[0], Public: set[1], Update: set[2]},
			})
		}
		return out, nil
	})
}

// providers are the executors a task of type d may name: the configured
// ones it can use, or its declared providers when no set is configured.
func (s *Server) providers(d *registry.Definition) []string {
	if s.deps.Executors == nil {
		return append([]string{}, d.Providers...)
	}
	return append([]string{}, s.deps.Executors.Usable(d.Providers)...)
}

// defaultProvider is the executor a task of type d that names none runs
// on; "" when the configuration gives it none.
func (s *Server) defaultProvider(d *registry.Definition) string {
	if s.deps.Executors == nil {
		return d.DefaultProvider
	}
	name, _ := s.deps.Executors.Resolve(d.Name, d.Providers, d.DefaultProvider, "")
	return name
}

// routesOf lists the typed routes of a task type, and its alias routes.
func routesOf(name, alias string) []string {
	routes := []string{"POST /api/v1/tasks/" + name, "GET /api/v1/tasks/" + name + "/{task_id}"}
	if alias != "" {
		routes = append(routes, aliasRoutes(alias)...)
	}
	return routes
}
