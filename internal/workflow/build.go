package workflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/telemetry"
)

// Resolver picks the executor a task runs on (executor.Set.Resolve).
type Resolver interface {
	Resolve(typeName string, kinds []string, fallback, requested string) (string, error)
}

// Builder makes a step's task from its create body, as POST /tasks does:
// the type's defaults, its fields' JSON Schema, its own checks
// (PrepareModel), the executor and the type's scheduler. It runs in any
// process (the one whose transaction completes a step's last dependency),
// so it needs no API server.
type Builder struct {
	Registry  *registry.Registry
	Executors Resolver // nil: provider_type is the type's default

	once   sync.Once
	models map[string]model
}

// model is a type's fields schema in its own registry (types' fields
// structs may share a Go name).
type model struct {
	reg    huma.Registry
	schema *huma.Schema
}

// base is the part of a create body that is not the type's own (the API's
// createBase, by JSON name).
type base struct {
	TaskType            string     `json:"task_type"`
	ProviderType        string     `json:"provider_type"`
	QueueName           string     `json:"queue_name"`
	Priority            int        `json:"priority"`
	RunAt               *time.Time `json:"run_at"`
	MaxAttempts         int        `json:"max_attempts"`
	TimeoutSeconds      int        `json:"timeout_seconds"`
	StartTimeoutSeconds int        `json:"start_timeout_seconds"`
	WebhookURL          string     `json:"webhook_url"`
	WebhookEvents       []string   `json:"webhook_events"`
	OriginInstance      string     `json:"origin_instance"`
	OriginZone          string     `json:"origin_zone"`
	EntityID            string     `json:"entity_id"`
}

// baseKeys are base's JSON names and origin_tenant_id (which a step's
// task takes from its workflow).
var baseKeys = func() map[string]bool {
	out := map[string]bool{"origin_tenant_id": true}
	t := reflect.TypeOf(base{})
	for i := range t.NumField() {
		out[strings.Split(t.Field(i).Tag.Get("json"), ",")[0]] = true
	}
	return out
}()

func (b *Builder) init() {
	b.models = map[string]model{}
	for _, def := range b.Registry.All() {
		reg := huma.NewMapRegistry("#/components/schemas/", huma.DefaultSchemaNamer)
		s := reg.Schema(reflect.TypeOf(def.NewModel()).Elem(), true, def.Name)
		if s.Ref != "" {
			s = reg.SchemaFromRef(s.Ref)
		}
		b.models[def.Name] = model{reg: reg, schema: s}
	}
}

// BodyError is a create body its type rejects.
type BodyError struct{ Msg string }

func (e *BodyError) Error() string { return e.Msg }

// Build returns the pending task a create body describes, for tenant.
func (b *Builder) Build(ctx context.Context, body json.RawMessage, tenant string) (*store.Record, error) {
	b.once.Do(b.init)
	var obj map[string]any
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		return nil, &BodyError{"the task must be a JSON object"}
	}
	name, _ := obj["task_type"].(string)
	def, ok := b.Registry.Lookup(name)
	if !ok {
		return nil, &BodyError{fmt.Sprintf("unknown task type %q", name)}
	}
	m := b.models[def.Name]
	schema := m.schema
	fields := map[string]any{}
	for k, v := range obj {
		if !baseKeys[k] {
			fields[k] = v
		}
	}
	if schema != nil {
		for k, p := range schema.Properties {
			if _, set := fields[k]; !set && p.Default != nil && !p.ReadOnly {
				fields[k] = p.Default
			}
		}
		res := &huma.ValidateResult{}
		huma.Validate(m.reg, schema, huma.NewPathBuffer([]byte("task"), 4), huma.ModeWriteToServer, fields, res)
		if len(res.Errors) > 0 {
			msgs := make([]string, len(res.Errors))
			for i, e := range res.Errors {
				msgs[i] = e.Error()
			}
			return nil, &BodyError{strings.Join(msgs, "; ")}
		}
	}
	raw, err := json.Marshal(fields)
	if err != nil {
		return nil, &BodyError{err.Error()}
	}
	var bb base
	if err := json.Unmarshal(body, &bb); err != nil {
		return nil, &BodyError{err.Error()}
	}
	model := def.NewModel()
	if err := json.Unmarshal(raw, model); err != nil {
		return nil, &BodyError{err.Error()}
	}
	if err := def.PrepareModel(model); err != nil {
		return nil, &BodyError{err.Error()}
	}
	t := newTask(def, &bb, tenant)
	t.TraceParent = telemetry.TraceParent(ctx) // the request's or run's span; "" when tracing is off
	if err := b.resolve(def, t, bb.ProviderType); err != nil {
		return nil, err
	}
	t.ProviderRequested = bb.ProviderType != ""
	if def.Scheduler != nil {
		chosen := t.ProviderType
		if err := def.Scheduler.Schedule(ctx, t, model); err != nil {
			return nil, &BodyError{err.Error()}
		}
		if t.ProviderType != chosen {
			if err := b.resolve(def, t, t.ProviderType); err != nil {
				return nil, err
			}
		}
	}
	return &store.Record{Task: t, Fields: model, Def: def}, nil
}

func (b *Builder) resolve(def *registry.Definition, t *task.Task, requested string) error {
	if b.Executors == nil {
		if requested != "" {
			t.ProviderType = requested
		}
		return nil
	}
	name, err := b.Executors.Resolve(def.Name, def.Providers, def.DefaultProvider, requested)
	if err != nil {
		return &BodyError{"provider_type: " + err.Error()}
	}
	t.ProviderType = name
	return nil
}

// newTask is the base row of a new task (as the API's newTask makes it).
func newTask(def *registry.Definition, b *base, tenant string) *task.Task {
	now := task.Now()
	id, err := uuid.NewV7()
	if err != nil {
		id = uuid.New()
	}
	t := &task.Task{
		ID: id, Type: def.Name, Status: task.StatusPending,
		ProviderType: def.DefaultProvider, QueueName: def.DefaultQueue, Priority: b.Priority,
		OriginInstance: b.OriginInstance, OriginZone: b.OriginZone, OriginTenantID: tenant,
		CreatedAt: now, UpdatedAt: now, RunAt: now,
		Errors: []task.Error{}, MaxAttempts: def.MaxAttempts, TimeoutSeconds: int(def.Timeout / time.Second),
		StartTimeoutSeconds: b.StartTimeoutSeconds, WebhookURL: b.WebhookURL, WebhookEvents: b.WebhookEvents,
		EntityID: b.EntityID,
	}
	if b.QueueName != "" {
		t.QueueName = b.QueueName
	}
	if b.RunAt != nil && b.RunAt.After(now) {
		t.RunAt = b.RunAt.UTC().Truncate(time.Microsecond)
	}
	if b.MaxAttempts > 0 {
		t.MaxAttempts = b.MaxAttempts
	}
	if b.TimeoutSeconds > 0 {
		t.TimeoutSeconds = b.TimeoutSeconds
	}
	return t
}

// IsBodyError reports whether err is a body its type rejects.
func IsBodyError(err error) bool {
	var be *BodyError
	return errors.As(err, &be)
}
