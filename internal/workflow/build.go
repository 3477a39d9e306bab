package workflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"

	"github.com/danielgtaylor/huma/v2"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/telemetry"
)

// Builder makes a step's task from its create body, as POST /tasks does:
// the type's defaults, its fields' JSON Schema, its own checks
// (PrepareModel), the executor and the type's scheduler. It runs in any
// process (the one whose transaction completes a step's last dependency),
// so it needs no API server.
type Builder struct {
	Registry  *registry.Registry
	Executors registry.Resolver // nil: provider_type is taken as named

	once   sync.Once
	models map[string]model
}

// model is a type's fields schema in its own registry (types' fields
// structs may share a Go name).
type model struct {
	reg    huma.Registry
	schema *huma.Schema
}

// baseKeys are the JSON names of registry.TaskBase, origin_tenant_id
// among them (which a step's task takes from its workflow).
var baseKeys = func() map[string]bool {
	out := map[string]bool{}
	t := reflect.TypeOf(registry.TaskBase{})
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
	var bb registry.TaskBase
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
	t := def.NewTask(&bb, tenant)
	t.TraceParent = telemetry.TraceParent(ctx) // the request's or run's span; "" when tracing is off
	if err := def.Place(ctx, t, model, bb.ProviderType, b.Executors); err != nil {
		return nil, &BodyError{err.Error()}
	}
	return &store.Record{Task: t, Fields: model, Def: def}, nil
}

// IsBodyError reports whether err is a body its type rejects.
func IsBodyError(err error) bool {
	var be *BodyError
	return errors.As(err, &be)
}
