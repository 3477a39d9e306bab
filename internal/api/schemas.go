package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/danielgtaylor/huma/v2"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
)

// createBase is the part of every create body that is not the type's own.
type createBase struct {
	TaskType            string     `json:"task_type,omitempty" doc:"The task type; required on POST /tasks/, optional on the typed route."`
	ProviderType        string     `json:"provider_type,omitempty" doc:"Executor to run the task; the type's default when omitted."`
	QueueName           string     `json:"queue_name,omitempty" maxLength:"64" pattern:"^[A-Za-z0-9_.:-]+$" doc:"Queue; the type's default when omitted."`
	Priority            int        `json:"priority,omitempty" minimum:"-1000" maximum:"1000" doc:"Higher runs first. Default 0."`
	RunAt               *time.Time `json:"run_at,omitempty" doc:"Do not start before this time."`
	MaxAttempts         int        `json:"max_attempts,omitempty" minimum:"1" maximum:"100" doc:"Attempts before the task fails; the type's default when omitted."`
	TimeoutSeconds      int        `json:"timeout_seconds,omitempty" minimum:"1" maximum:"604800" doc:"Execution timeout of one attempt; the type's default when omitted."`
	StartTimeoutSeconds int        `json:"start_timeout_seconds,omitempty" minimum:"0" maximum:"604800" doc:"Fail the task if it has not started this long after creation; 0 = never."`
	WebhookURL          string     `json:"webhook_url,omitempty" maxLength:"2048" format:"uri" doc:"HTTP(S) URL that receives this task's events."`
	WebhookEvents       []string   `json:"webhook_events,omitempty" minItems:"1" maxItems:"6" enum:"pending,executing,completed,failed,cancelled,progress" doc:"Which events the webhook receives: list at least one event, or omit webhook_events for every status change (an empty list is refused)."`
	OriginInstance      string     `json:"origin_instance,omitempty" maxLength:"256"`
	OriginZone          string     `json:"origin_zone,omitempty" maxLength:"256"`
	OriginTenantID      string     `json:"origin_tenant_id,omitempty" maxLength:"256" doc:"Tenant; set from the API key for tenant keys."`
	EntityID            string     `json:"entity_id,omitempty" maxLength:"256" doc:"Your id of what the task is about, echoed as entity_id in every event and webhook body; the task id when omitted."`
}

// updateBase is the part of every PATCH body that is not the type's own.
// An absent field is left unchanged; null clears webhook_url and
// webhook_events and is a 422 for every other field (see clearable).
type updateBase struct {
	Priority      *int       `json:"priority,omitempty" minimum:"-1000" maximum:"1000"`
	QueueName     *string    `json:"queue_name,omitempty" maxLength:"64" pattern:"^[A-Za-z0-9_.:-]+$"`
	RunAt         *time.Time `json:"run_at,omitempty"`
	MaxAttempts   *int       `json:"max_attempts,omitempty" minimum:"1" maximum:"100"`
	WebhookURL    *string    `json:"webhook_url,omitempty" maxLength:"2048" format:"uri" doc:"HTTP(S) URL that receives this task's events; null clears it (the server's default URL applies)."`
	WebhookEvents *[]string  `json:"webhook_events,omitempty" minItems:"1" maxItems:"6" enum:"pending,executing,completed,failed,cancelled,progress" doc:"Which events the webhook receives from now on: list at least one event (an empty list is refused); null clears the list (every status change is sent, as when it is left out at create)."`
}

// typeSchemas are the named schemas of one task type.
type typeSchemas struct {
	def *registry.Definition
	// create, public and update are the component schemas themselves.
	create, public, update *huma.Schema
	// createRef and publicRef point at the create and public components.
	createRef, publicRef *huma.Schema
	// defaults are the type fields' declared defaults by JSON name.
	defaults map[string]any
}

// schemaNamer names component schemas: the API's own names first
// (componentNames, and a task type's Fields and Update structs after the
// type: ImageAdjusterFields), else after their package and type, so two
// packages may both call a struct Fields.
func schemaNamer(typeNames map[reflect.Type]string) func(reflect.Type, string) string {
	return func(t reflect.Type, hint string) string {
		name := huma.DefaultSchemaNamer(t, hint)
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if n, ok := componentNames[t]; ok {
			return n
		}
		if n, ok := typeNames[t]; ok {
			return n
		}
		pkg := t.PkgPath()
		if pkg == "" || strings.HasSuffix(pkg, "/internal/api") || strings.HasSuffix(pkg, "/internal/task") ||
			!strings.Contains(pkg, ".") && !strings.Contains(pkg, "/") {
			return name
		}
		return camel(pkg[strings.LastIndex(pkg, "/")+1:]) + name
	}
}

func camel(s string) string {
	var b strings.Builder
	up := true
	for _, r := range s {
		if r == '_' || r == '-' || r == '.' {
			up = true
			continue
		}
		if up {
			r = unicode.ToUpper(r)
			up = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

// objectOf returns the object schema of a struct type, registering it.
func objectOf(r huma.Registry, t reflect.Type) *huma.Schema {
	s := r.Schema(t, true, "")
	for s.Ref != "" {
		s = r.SchemaFromRef(s.Ref)
	}
	return s
}

// buildTypeSchemas registers a type's create, public and update schemas.
func buildTypeSchemas(r huma.Registry, def *registry.Definition) (*typeSchemas, error) {
	base := camel(def.Name)
	names := map[string]string{"create": base + "TaskCreate", "public": base + "TaskPublic"}
	for _, n := range names {
		if r.Map()[n] != nil {
			return nil, fmt.Errorf("schema name %s of task type %q is already taken", n, def.Name)
		}
	}
	fields := objectOf(r, def.Model)
	readOnly := map[string]bool{}
	ts := &typeSchemas{def: def, defaults: map[string]any{}}
	for _, c := range def.Columns {
		if c.ReadOnly {
			readOnly[c.JSONName] = true
		}
		if p := fields.Properties[c.JSONName]; p != nil && p.Default != nil && !c.ReadOnly {
			ts.defaults[c.JSONName] = p.Default
		}
	}
	title := def.Title
	if title == "" {
		title = def.Name
	}

	// Create: the base create fields, then the type's writable fields.
	cb := objectOf(r, reflect.TypeFor[createBase]())
	create := &huma.Schema{
		Type:                 huma.TypeObject,
		Title:                title + " task (create)",
		Description:          def.Description,
		Properties:           map[string]*huma.Schema{},
		AdditionalProperties: false,
	}
	for k, v := range cb.Properties {
		create.Properties[k] = v
	}
	tt := *cb.Properties["task_type"]
	tt.Enum = []any{def.Name}
	create.Properties["task_type"] = &tt
	// The executors are configured per deployment, so the schema names no
	// list: an executor that is not configured for the type is a 422 at
	// create naming the ones that are (GET /api/v1/task-types lists them).
	pt := *cb.Properties["provider_type"]
	pt.Description = "Configured executor to run the task (see providers in GET /api/v1/task-types); the type's default when omitted."
	create.Properties["provider_type"] = &pt
	for k, v := range fields.Properties {
		if !readOnly[k] {
			create.Properties[k] = withoutDefault(v)
		}
	}
	for _, k := range fields.Required {
		if !readOnly[k] {
			create.Required = append(create.Required, k)
		}
	}

	// Public: every base task field, then every type field.
	tb := objectOf(r, reflect.TypeFor[task.Task]())
	public := &huma.Schema{
		Type:        huma.TypeObject,
		Title:       title + " task",
		Description: def.Description,
		Properties:  map[string]*huma.Schema{},
		Required:    slices.Clone(tb.Required),
	}
	for k, v := range tb.Properties {
		public.Properties[k] = v
	}
	tt2 := *tb.Properties["task_type"]
	tt2.Enum = []any{def.Name}
	public.Properties["task_type"] = &tt2
	// result is absent until the task completes (never null).
	public.Properties["result"] = resultRef(r)
	public.Required = slices.DeleteFunc(public.Required, func(k string) bool { return k == "result" })
	for k, v := range fields.Properties {
		public.Properties[k] = withoutDefault(v)
	}
	public.Required = append(public.Required, fields.Required...)

	// Update: the base updatable fields, then the type's PATCH fields.
	ub := objectOf(r, reflect.TypeFor[updateBase]())
	update := &huma.Schema{
		Type:                 huma.TypeObject,
		Title:                title + " task (update)",
		Properties:           map[string]*huma.Schema{},
		AdditionalProperties: false,
	}
	for k, v := range ub.Properties {
		update.Properties[k] = v
	}
	if def.Update.NumField() > 0 {
		for k, v := range objectOf(r, def.Update).Properties {
			update.Properties[k] = v
		}
	}

	// The update schema is not a component: PATCH /tasks/{task_id} takes
	// TaskUpdate (every type's fields), and the handler validates a body
	// against the task's own type's schema.
	update.PrecomputeMessages()
	for kind, s := range map[string]*huma.Schema{"create": create, "public": public} {
		s.PrecomputeMessages()
		r.Map()[names[kind]] = s
	}
	ts.create, ts.public, ts.update = create, public, update
	ts.createRef = &huma.Schema{Ref: refPrefix + names["create"]}
	ts.publicRef = &huma.Schema{Ref: refPrefix + names["public"]}
	return ts, nil
}

const refPrefix = "#/components/schemas/"

// unionSchemas registers TaskCreate and TaskPublic, oneOf the types'
// schemas discriminated by task_type, and TaskUpdate, one object with every
// type's updatable fields.
//
// TaskCreate has nothing but the oneOf and the discriminator: a
// `task_type` property beside them makes generators send the field twice
// (once for the union, once for the variant). TaskUpdate is no anyOf of the
// types' update schemas: a PATCH body carries no task_type to tell them
// apart, and ogen refuses such an anyOf ("complex anyOf").
//
// createCheck is what huma validates POST /tasks/ bodies against: the same
// union, plus an object type and a task_type enum, so that a body that is
// no object, or names no registered type, gets a 422 located at the
// problem rather than "matched no schema".
func unionSchemas(r huma.Registry, all []*typeSchemas) (create, createCheck, public, update *huma.Schema) {
	createMap, publicMap := map[string]string{}, map[string]string{}
	c := &huma.Schema{Description: "A new task; `task_type` selects the schema."}
	p := &huma.Schema{Description: "A task in its type's public schema; `task_type` tells which."}
	u := &huma.Schema{
		Type:                 huma.TypeObject,
		Description:          "Fields to change on a pending task. Which fields a task accepts depends on its type (GET /api/v1/task-types lists each type's update schema); others are refused with a 422.",
		Properties:           map[string]*huma.Schema{},
		AdditionalProperties: false,
	}
	seen := map[string][]byte{}
	for _, ts := range all {
		c.OneOf = append(c.OneOf, ts.createRef)
		p.OneOf = append(p.OneOf, ts.publicRef)
		createMap[ts.def.Name] = ts.createRef.Ref
		publicMap[ts.def.Name] = ts.publicRef.Ref
		for k, v := range ts.update.Properties {
			raw, _ := json.Marshal(v)
			switch prev, ok := seen[k]; {
			case !ok:
				seen[k] = raw
				u.Properties[k] = v
			case !bytes.Equal(prev, raw):
				// Two types declare the field differently: the
				// union cannot say more than that it exists.
				u.Properties[k] = &huma.Schema{Description: "Depends on the task's type; see GET /api/v1/task-types."}
			}
		}
	}
	c.Discriminator = &huma.Discriminator{PropertyName: "task_type", Mapping: createMap}
	names := make([]any, len(all))
	for i, ts := range all {
		names[i] = ts.def.Name
	}
	check := &huma.Schema{
		Type:          huma.TypeObject,
		Properties:    map[string]*huma.Schema{"task_type": {Type: huma.TypeString, Enum: names}},
		Required:      []string{"task_type"},
		OneOf:         c.OneOf,
		Discriminator: c.Discriminator,
	}
	check.PrecomputeMessages()
	p.Discriminator = &huma.Discriminator{PropertyName: "task_type", Mapping: publicMap}
	for name, s := range map[string]*huma.Schema{"TaskCreate": c, "TaskPublic": p, "TaskUpdate": u} {
		s.PrecomputeMessages()
		r.Map()[name] = s
	}
	return &huma.Schema{Ref: refPrefix + "TaskCreate"}, check, &huma.Schema{Ref: refPrefix + "TaskPublic"}, &huma.Schema{Ref: refPrefix + "TaskUpdate"}
}
