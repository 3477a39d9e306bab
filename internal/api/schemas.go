package api

import (
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
	WebhookEvents       []string   `json:"webhook_events,omitempty" maxItems:"6" enum:"pending,executing,completed,failed,cancelled,progress" doc:"Which events the webhook receives; all status changes when omitted."`
	OriginInstance      string     `json:"origin_instance,omitempty" maxLength:"256"`
	OriginZone          string     `json:"origin_zone,omitempty" maxLength:"256"`
	OriginTenantID      string     `json:"origin_tenant_id,omitempty" maxLength:"256" doc:"Tenant; set from the API key for tenant keys."`
}

// updateBase is the part of every PATCH body that is not the type's own.
type updateBase struct {
	Priority      *int       `json:"priority,omitempty" minimum:"-1000" maximum:"1000"`
	QueueName     *string    `json:"queue_name,omitempty" maxLength:"64" pattern:"^[A-Za-z0-9_.:-]+$"`
	RunAt         *time.Time `json:"run_at,omitempty"`
	MaxAttempts   *int       `json:"max_attempts,omitempty" minimum:"1" maximum:"100"`
	WebhookURL    *string    `json:"webhook_url,omitempty" maxLength:"2048" format:"uri"`
	WebhookEvents *[]string  `json:"webhook_events,omitempty" maxItems:"6" enum:"pending,executing,completed,failed,cancelled,progress"`
}

// typeSchemas are the named schemas of one task type.
type typeSchemas struct {
	def *registry.Definition
	// create, public and update are the component schemas themselves.
	create, public, update *huma.Schema
	// createRef, publicRef and updateRef point at them.
	createRef, publicRef, updateRef *huma.Schema
	// defaults are the type fields' declared defaults by JSON name.
	defaults map[string]any
}

// schemaNamer names component schemas after their package and type, so two
// task types may both call their struct Fields.
func schemaNamer(t reflect.Type, hint string) string {
	name := huma.DefaultSchemaNamer(t, hint)
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	pkg := t.PkgPath()
	if pkg == "" || strings.HasSuffix(pkg, "/internal/api") || strings.HasSuffix(pkg, "/internal/task") ||
		!strings.Contains(pkg, ".") && !strings.Contains(pkg, "/") {
		return name
	}
	return camel(pkg[strings.LastIndex(pkg, "/")+1:]) + name
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
	names := map[string]string{"create": base + "TaskCreate", "public": base + "TaskPublic", "update": base + "TaskUpdate"}
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
	pt := *cb.Properties["provider_type"]
	for _, p := range def.Providers {
		pt.Enum = append(pt.Enum, p)
	}
	pt.Default = def.DefaultProvider
	create.Properties["provider_type"] = &pt
	for k, v := range fields.Properties {
		if !readOnly[k] {
			create.Properties[k] = v
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
	for k, v := range fields.Properties {
		public.Properties[k] = v
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

	for kind, s := range map[string]*huma.Schema{"create": create, "public": public, "update": update} {
		s.PrecomputeMessages()
		r.Map()[names[kind]] = s
	}
	ts.create, ts.public, ts.update = create, public, update
	ts.createRef = &huma.Schema{Ref: refPrefix + names["create"]}
	ts.publicRef = &huma.Schema{Ref: refPrefix + names["public"]}
	ts.updateRef = &huma.Schema{Ref: refPrefix + names["update"]}
	return ts, nil
}

const refPrefix = "#/components/schemas/"

// unionSchemas registers TaskCreate, TaskPublic and TaskUpdate: oneOf the
// types' schemas, discriminated by task_type.
func unionSchemas(r huma.Registry, all []*typeSchemas) (create, public, update *huma.Schema) {
	names := make([]any, len(all))
	createMap, publicMap := map[string]string{}, map[string]string{}
	c := &huma.Schema{
		Type:        huma.TypeObject,
		Description: "A new task; `task_type` selects the schema.",
		Properties:  map[string]*huma.Schema{},
		Required:    []string{"task_type"},
	}
	p := &huma.Schema{Description: "A task in its type's public schema; `task_type` tells which."}
	u := &huma.Schema{Description: "Fields to change on a pending task; the accepted fields depend on the task's type."}
	for i, ts := range all {
		names[i] = ts.def.Name
		c.OneOf = append(c.OneOf, ts.createRef)
		p.OneOf = append(p.OneOf, ts.publicRef)
		u.AnyOf = append(u.AnyOf, ts.updateRef)
		createMap[ts.def.Name] = ts.createRef.Ref
		publicMap[ts.def.Name] = ts.publicRef.Ref
	}
	c.Properties["task_type"] = &huma.Schema{Type: huma.TypeString, Enum: names, Description: "The task type."}
	c.Discriminator = &huma.Discriminator{PropertyName: "task_type", Mapping: createMap}
	p.Discriminator = &huma.Discriminator{PropertyName: "task_type", Mapping: publicMap}
	for name, s := range map[string]*huma.Schema{"TaskCreate": c, "TaskPublic": p, "TaskUpdate": u} {
		s.PrecomputeMessages()
		r.Map()[name] = s
	}
	return &huma.Schema{Ref: refPrefix + "TaskCreate"}, &huma.Schema{Ref: refPrefix + "TaskPublic"}, &huma.Schema{Ref: refPrefix + "TaskUpdate"}
}
