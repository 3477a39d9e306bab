package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"sync"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/task"
)

// The OpenAPI document is read by client generators (oapi-codegen, ogen,
// openapi-typescript; clientcheck/ proves it). What they need from it:
// one named enum for every status, one uuid format for every task id, no
// nullable arrays, no `default` that a generator would read as "always
// present", no component nobody refers to, and no Go internals (huma's own
// Schema struct) described as if they were API types.

// Component names the document guarantees.
const (
	statusSchemaName     = "TaskStatus"
	resultSchemaName     = "TaskResult"
	jsonSchemaSchemaName = "JSONSchema"
)

var configureHumaOnce sync.Once

// configureHuma sets huma's package-level schema options once: arrays are
// described as never null (the handlers never send null for an array).
func configureHuma() {
	configureHumaOnce.Do(func() { huma.DefaultArrayNullable = false })
}

// registerAliases makes every task.Status a $ref to the TaskStatus enum and
// every uuid.UUID a string of format uuid.
func registerAliases(r huma.Registry) {
	r.RegisterTypeAlias(reflect.TypeFor[task.Status](), reflect.TypeFor[statusEnum]())
	r.RegisterTypeAlias(reflect.TypeFor[uuid.UUID](), reflect.TypeFor[uuidString]())
}

// statusEnum stands for task.Status in schemas.
type statusEnum string

// Schema registers the TaskStatus component and refers to it.
func (statusEnum) Schema(r huma.Registry) *huma.Schema {
	if r.Map()[statusSchemaName] == nil {
		enum := make([]any, len(task.Statuses))
		for i, s := range task.Statuses {
			enum[i] = string(s)
		}
		s := &huma.Schema{Type: huma.TypeString, Enum: enum, Description: "A task's status."}
		s.PrecomputeMessages()
		r.Map()[statusSchemaName] = s
	}
	return &huma.Schema{Ref: refPrefix + statusSchemaName}
}

// uuidString stands for uuid.UUID in schemas.
type uuidString string

// Schema describes a UUID.
func (uuidString) Schema(huma.Registry) *huma.Schema {
	return &huma.Schema{Type: huma.TypeString, Format: "uuid"}
}

// resultJSON is a stored task result, sent as stored and described as the
// TaskResult component.
type resultJSON json.RawMessage

// MarshalJSON sends the stored JSON.
func (r resultJSON) MarshalJSON() ([]byte, error) {
	if len(r) == 0 {
		return []byte("null"), nil
	}
	return r, nil
}

// Schema refers to TaskResult.
func (resultJSON) Schema(r huma.Registry) *huma.Schema {
	return resultRef(r)
}

// storedResult is a stored result, nil when there is none (JSON null
// included), so that `result` is absent rather than null.
func storedResult(raw json.RawMessage) resultJSON {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return resultJSON(raw)
}

// resultRef registers TaskResult (task.Result) and refers to it.
func resultRef(r huma.Registry) *huma.Schema {
	if r.Map()[resultSchemaName] == nil {
		r.Schema(reflect.TypeFor[task.Result](), true, "")
	}
	return &huma.Schema{Ref: refPrefix + resultSchemaName}
}

// jsonSchemaDoc is a JSON Schema served as data (GET /task-types),
// self-contained: the components it refers to are carried in its `$defs`.
// The document describes it as a free-form object, never as huma's Schema
// struct, which generators cannot use (38 required PascalCase fields and a
// recursive type).
type jsonSchemaDoc json.RawMessage

// MarshalJSON sends the schema.
func (d jsonSchemaDoc) MarshalJSON() ([]byte, error) { return d, nil }

// standalone renders s with every component it refers to, directly or
// not, under `$defs`, its references rewritten to point there.
func standalone(r huma.Registry, s *huma.Schema) (jsonSchemaDoc, error) {
	raw, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("rendering a schema: %w", err)
	}
	defs := map[string]json.RawMessage{}
	queue := [][]byte{raw}
	for len(queue) > 0 {
		for _, m := range refPattern.FindAllSubmatch(queue[0], -1) {
			name := string(m[1])
			if _, ok := defs[name]; ok {
				continue
			}
			b, err := json.Marshal(r.Map()[name])
			if err != nil {
				return nil, fmt.Errorf("rendering schema %s: %w", name, err)
			}
			defs[name] = rewriteRefs(b)
			queue = append(queue, b)
		}
		queue = queue[1:]
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(rewriteRefs(raw), &obj); err != nil {
		return nil, fmt.Errorf("rendering a schema: %w", err)
	}
	if len(defs) > 0 {
		if obj["$defs"], err = json.Marshal(defs); err != nil {
			return nil, fmt.Errorf("rendering a schema: %w", err)
		}
	}
	out, err := json.Marshal(obj)
	return out, err
}

// rewriteRefs points component references at `$defs`.
func rewriteRefs(b []byte) []byte {
	return bytes.ReplaceAll(b, []byte(`"`+refPrefix), []byte(`"#/$defs/`))
}

// Schema registers the JSONSchema component and refers to it.
func (jsonSchemaDoc) Schema(r huma.Registry) *huma.Schema {
	if r.Map()[jsonSchemaSchemaName] == nil {
		r.Map()[jsonSchemaSchemaName] = &huma.Schema{
			Type:                 huma.TypeObject,
			Description:          "A JSON Schema (draft 2020-12) object.",
			AdditionalProperties: true,
		}
	}
	return &huma.Schema{Ref: refPrefix + jsonSchemaSchemaName}
}

// componentNames names schemas whose Go names would be unclear or clash
// (the API's own names win over the package-derived ones).
var componentNames = map[reflect.Type]string{
	reflect.TypeFor[task.Result]():      resultSchemaName,
	reflect.TypeFor[task.Artifact]():    "TaskArtifact",
	reflect.TypeFor[task.Error]():       "TaskError",
	reflect.TypeFor[huma.ErrorModel]():  "ErrorModel",
	reflect.TypeFor[huma.ErrorDetail](): "ErrorDetail",
}

// withoutDefault returns s without a `default` (kept in the description),
// copying it when it has one: generators read a default as "the field is
// always there" (openapi-typescript makes such fields required), while
// the server applies defaults in code.
func withoutDefault(s *huma.Schema) *huma.Schema {
	if s == nil || s.Default == nil {
		return s
	}
	c := *s
	d, _ := json.Marshal(s.Default)
	c.Description = strings.TrimSpace(strings.TrimSuffix(c.Description, ".") + ". Default: " + string(d) + ".")
	c.Description = strings.TrimPrefix(c.Description, ". ")
	c.Default = nil
	return &c
}

// finishDocument makes the last corrections the document needs once every
// route is registered: path task ids are described as uuids and delivery
// ids as int64s, and components nothing refers to are removed.
func (s *Server) finishDocument() {
	doc := s.api.OpenAPI()
	one := 1.0
	idSchemas := map[string]huma.Schema{
		"task_id": {Type: huma.TypeString, Format: "uuid"},
		"id":      {Type: huma.TypeInteger, Format: "int64", Minimum: &one},
	}
	for _, item := range doc.Paths {
		for _, op := range []*huma.Operation{item.Get, item.Put, item.Post, item.Delete, item.Patch} {
			if op == nil {
				continue
			}
			for i, p := range op.Parameters {
				want, ok := idSchemas[p.Name]
				if p.In != "path" || !ok || p.Schema == nil || p.Schema.Format == want.Format {
					continue
				}
				// A copy: huma validates with the original, and a
				// malformed id stays a 404 (nothing has that id), not a
				// 422.
				c := *p
				sc := *p.Schema
				sc.Type, sc.Format, sc.Minimum = want.Type, want.Format, want.Minimum
				c.Schema = &sc
				op.Parameters[i] = &c
			}
		}
	}
	pruneComponents(doc)
	for _, c := range doc.Components.Schemas.Map() {
		for k, p := range c.Properties {
			c.Properties[k] = withoutDefault(p)
		}
	}
}

var refPattern = regexp.MustCompile(`"#/components/schemas/([^"]+)"`)

// pruneComponents removes the component schemas no path refers to,
// directly or through other components.
func pruneComponents(doc *huma.OpenAPI) {
	all := doc.Components.Schemas.Map()
	paths, err := json.Marshal(doc.Paths)
	if err != nil {
		panic(fmt.Errorf("api: marshalling the paths: %w", err)) // a bug in a schema
	}
	used := map[string]bool{}
	queue := [][]byte{paths}
	for len(queue) > 0 {
		raw := queue[0]
		queue = queue[1:]
		for _, m := range refPattern.FindAllSubmatch(raw, -1) {
			name := string(m[1])
			if used[name] || all[name] == nil {
				continue
			}
			used[name] = true
			b, err := json.Marshal(all[name])
			if err != nil {
				panic(fmt.Errorf("api: marshalling schema %s: %w", name, err))
			}
			queue = append(queue, b)
		}
	}
	for name := range all {
		if !used[name] {
			delete(all, name)
		}
	}
}
