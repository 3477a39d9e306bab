package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/apikey"
	"github.com/computeserver/compute/internal/netguard"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/telemetry"
)

type createInput struct {
	IdempotencyKey string `header:"Idempotency-Key" maxLength:"255" doc:"Repeating a create with the same key returns the first task (200) instead of creating another."`
	Body           json.RawMessage
}

type taskOutput struct {
	Status int
	Body   json.RawMessage
}

type idInput struct {
	TaskID string `path:"task_id" doc:"The task id (a UUID)."`
}

type typedIDInput struct {
	TaskType string `path:"task_type" doc:"A registered task type."`
	TaskID   string `path:"task_id" doc:"The task id (a UUID)."`
}

type typeInput struct {
	TaskType string `path:"task_type" doc:"A registered task type."`
}

// jsonBody is a request or response body with a schema given by reference.
func jsonBody(s *huma.Schema) map[string]*huma.MediaType {
	return map[string]*huma.MediaType{"application/json": {Schema: s}}
}

func (s *Server) registerTaskRoutes() {
	tags := []string{"Tasks"}
	taskResponses := func(codes ...string) map[string]*huma.Response {
		out := map[string]*huma.Response{}
		for _, c := range codes {
			out[c] = &huma.Response{Description: "The task in its type's public schema.", Content: jsonBody(s.publicUnion)}
		}
		return out
	}

	huma.Register(s.api, huma.Operation{
		OperationID: "create-task", Method: http.MethodPost, Path: "/api/v1/tasks/", Tags: tags,
		Summary:     "Create a task of any type",
		Description: "The body is one of the registered types' create schemas, selected by `task_type`. Answers 201 with the new task, or 200 with the first task when the Idempotency-Key was seen before.",
		Security:    bearer, MaxBodyBytes: s.cfg.MaxBodyBytes, DefaultStatus: http.StatusCreated,
		RequestBody: &huma.RequestBody{Required: true, Content: jsonBody(s.createCheck)},
		Responses:   taskResponses("200", "201"),
		Errors:      []int{400, 401, 409, 413, 415, 422},
	}, func(ctx context.Context, in *createInput) (*taskOutput, error) {
		return s.create(ctx, nil, in)
	})
	// huma validates with createCheck; the document shows TaskCreate.
	if item := s.api.OpenAPI().Paths["/api/v1/tasks/"]; item != nil && item.Post != nil {
		item.Post.RequestBody.Content = jsonBody(s.createUnion)
	}

	for _, ts := range s.ordered {
		huma.Register(s.api, huma.Operation{
			OperationID: "create-" + strings.ReplaceAll(ts.def.Name, "_", "-") + "-task", Method: http.MethodPost, Path: "/api/v1/tasks/" + ts.def.Name,
			Tags: []string{"Task types"}, Summary: "Create a " + ts.def.Name + " task", Description: ts.def.Description,
			Security: bearer, MaxBodyBytes: s.cfg.MaxBodyBytes, DefaultStatus: http.StatusCreated,
			RequestBody: &huma.RequestBody{Required: true, Content: jsonBody(ts.createRef)},
			Responses: map[string]*huma.Response{
				"200": {Description: "The existing task for this Idempotency-Key.", Content: jsonBody(ts.publicRef)},
				"201": {Description: "The new task.", Content: jsonBody(ts.publicRef)},
			},
			Errors: []int{400, 401, 409, 413, 415, 422},
		}, func(ctx context.Context, in *createInput) (*taskOutput, error) {
			return s.create(ctx, ts, in)
		})
	}
	// Any other POST /tasks/{task_type} names a type that does not exist.
	huma.Register(s.api, huma.Operation{
		OperationID: "create-unknown-type-task", Method: http.MethodPost, Path: "/api/v1/tasks/{task_type}", Tags: tags,
		Summary: "Create a task of a named type (unknown types answer 404)", Security: bearer, Hidden: true,
		MaxBodyBytes: s.cfg.MaxBodyBytes, Errors: []int{401, 404},
	}, func(ctx context.Context, in *typeInput) (*taskOutput, error) {
		return nil, huma.Error404NotFound("unknown task type " + quoteName(in.TaskType) + "; GET /api/v1/task-types lists the registered types")
	})

	huma.Register(s.api, huma.Operation{
		OperationID: "get-task", Method: http.MethodGet, Path: "/api/v1/tasks/{task_id}", Tags: tags,
		Summary: "Get a task", Security: bearer, Responses: taskResponses("200"), Errors: []int{401, 404},
	}, func(ctx context.Context, in *idInput) (*taskOutput, error) {
		rec, err := s.load(ctx, in.TaskID)
		if err != nil {
			return nil, err
		}
		return s.output(rec, http.StatusOK)
	})

	s.registerAliasRoutes()

	huma.Register(s.api, huma.Operation{
		OperationID: "get-typed-task", Method: http.MethodGet, Path: "/api/v1/tasks/{task_type}/{task_id}", Tags: []string{"Task types"},
		Summary: "Get a task of a given type", Description: "404 when the task exists but has another type.",
		Security: bearer, Responses: taskResponses("200"), Errors: []int{401, 404},
	}, func(ctx context.Context, in *typedIDInput) (*taskOutput, error) {
		if _, ok := s.types[in.TaskType]; !ok {
			return nil, huma.Error404NotFound("unknown task type " + quoteName(in.TaskType))
		}
		rec, err := s.loadOfType(ctx, in.TaskID, in.TaskType)
		if err != nil {
			return nil, err
		}
		return s.output(rec, http.StatusOK)
	})

	s.registerListRoute()
	s.registerChangeRoutes()
	s.registerDeleteRoute()
	s.registerTypesRoute()
}

func quoteName(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return `"` + s + `"`
}

// parseTaskID parses a task id from a path; a malformed one names no task
// (404).
func parseTaskID(rawID string) (uuid.UUID, error) {
	id, ok := canonicalUUID(rawID)
	if !ok {
		return uuid.Nil, huma.Error404NotFound("task not found: " + quoteName(rawID) + " is not a task id")
	}
	return id, nil
}

// canonicalUUID parses a UUID written only as the API writes one:
// lowercase 8-4-4-4-12 hex. Other spellings uuid.Parse accepts (upper
// case, braces, urn:uuid:, no dashes) name no resource, so each resource
// has one URL.
func canonicalUUID(raw string) (uuid.UUID, bool) {
	id, err := uuid.Parse(raw)
	if err != nil || id.String() != raw {
		return uuid.Nil, false
	}
	return id, true
}

// load returns a task visible to the caller, or a 404 problem.
func (s *Server) load(ctx context.Context, rawID string) (*store.Record, error) {
	id, err := parseTaskID(rawID)
	if err != nil {
		return nil, err
	}
	rec, err := s.deps.Store.GetTask(ctx, id, principalFrom(ctx).scope())
	if err != nil {
		return nil, s.problem(err, "task")
	}
	return rec, nil
}

// loadOfType is load for a route of one task type: a task of another
// type is not found.
func (s *Server) loadOfType(ctx context.Context, rawID, taskType string) (*store.Record, error) {
	rec, err := s.load(ctx, rawID)
	if err != nil {
		return nil, err
	}
	if rec.Task.Type != taskType {
		return nil, huma.Error404NotFound("task not found")
	}
	return rec, nil
}

func (s *Server) output(rec *store.Record, status int) (*taskOutput, error) {
	body, err := publicJSON(rec)
	if err != nil {
		return nil, s.problem(err, "task")
	}
	return &taskOutput{Status: status, Body: body}, nil
}

// publicJSON renders a task in its type's public schema: the base fields
// and the type's fields in one flat object.
func publicJSON(rec *store.Record) (json.RawMessage, error) {
	t := *rec.Task
	t.Result = json.RawMessage(storedResult(t.Result))
	base, err := json.Marshal(&t)
	if err != nil {
		return nil, err
	}
	fields, err := json.Marshal(rec.Fields)
	if err != nil {
		return nil, err
	}
	if len(fields) <= 2 {
		return base, nil
	}
	out := make([]byte, 0, len(base)+len(fields))
	out = append(out, base[:len(base)-1]...)
	out = append(out, ',')
	return append(out, fields[1:]...), nil
}

// create handles both create routes; ts is nil on the union route.
func (s *Server) create(ctx context.Context, ts *typeSchemas, in *createInput) (*taskOutput, error) {
	var obj map[string]any
	if err := json.Unmarshal(in.Body, &obj); err != nil || obj == nil {
		return nil, huma.Error400BadRequest("the body must be a JSON object")
	}
	if ts == nil {
		name, _ := obj["task_type"].(string)
		if ts = s.types[name]; ts == nil {
			return nil, huma.Error422UnprocessableEntity("validation failed", &huma.ErrorDetail{
				Location: "body.task_type", Message: "unknown task type", Value: obj["task_type"],
			})
		}
	}
	def := ts.def
	for k, v := range ts.defaults {
		if _, ok := obj[k]; !ok {
			obj[k] = v
		}
	}
	obj["task_type"] = def.Name
	canon, err := json.Marshal(obj)
	if err != nil {
		return nil, huma.Error400BadRequest("the body must be a JSON object")
	}
	var base createBase
	model := def.NewModel()
	if err := json.Unmarshal(canon, &base); err != nil {
		return nil, huma.Error422UnprocessableEntity("validation failed: " + err.Error())
	}
	if err := json.Unmarshal(canon, model); err != nil {
		return nil, huma.Error422UnprocessableEntity("validation failed: " + err.Error())
	}
	if err := def.PrepareModel(model); err != nil {
		return nil, s.problem(err, "task")
	}
	if base.WebhookURL != "" {
		if err := checkWebhookURL(base.WebhookURL); err != nil {
			return nil, s.problem(err, "task")
		}
	}
	p := principalFrom(ctx)
	tenant := base.OriginTenantID
	if tenant != "" { // "" is no tenant, as when it is left out
		if err := apikey.CheckTenant(tenant); err != nil {
			return nil, huma.Error422UnprocessableEntity("validation failed", &huma.ErrorDetail{
				Location: "body.origin_tenant_id", Message: err.Error(), Value: tenant,
			})
		}
	}
	if !p.admin {
		if d := foreignTenant(p, "body.origin_tenant_id", tenant); d != nil {
			return nil, huma.Error422UnprocessableEntity("validation failed", d)
		}
		tenant = p.tenantID
	}
	t := def.NewTask((*registry.TaskBase)(&base), tenant)
	t.TraceParent = telemetry.TraceParent(ctx) // "" when tracing is off
	if err := def.Place(ctx, t, model, base.ProviderType, s.resolver()); err != nil {
		return nil, s.problem(err, "task")
	}
	if in.IdempotencyKey != "" {
		t.IdempotencyKey = p.idempotencyScope() + ":" + in.IdempotencyKey
		sum := sha256.Sum256(canon)
		t.RequestHash = hex.EncodeToString(sum[:])
	}
	rec, created, err := s.deps.Store.CreateTask(ctx, &store.Record{Task: t, Fields: model, Def: def})
	if err != nil {
		return nil, s.problem(err, "task")
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		if s.deps.Engine != nil {
			s.deps.Engine.Notify()
		}
	}
	return s.output(rec, status)
}

// resolver is the executors new tasks are placed on (nil: none
// configured, a provider_type is taken as named).
func (s *Server) resolver() registry.Resolver {
	if s.deps.Executors == nil {
		return nil
	}
	return s.deps.Executors
}

// checkWebhookURL accepts absolute http and https URLs with a host. Where
// they may connect is checked at delivery time, on the resolved address.
func checkWebhookURL(raw string) error {
	if err := netguard.CheckEndpointURL(raw); err != nil {
		msg := "must be an absolute http or https URL"
		if errors.Is(err, netguard.ErrURLCredentials) {
			msg = "must not contain credentials"
		}
		return &registry.FieldError{Field: "webhook_url", Message: msg}
	}
	return nil
}
