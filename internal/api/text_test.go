package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/danielgtaylor/huma/v2"

	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/registry"
)

// badText is a way to spoil a string field of a JSON body.
type badText struct {
	name string
	// spoil returns the body with the placeholder string replaced.
	spoil func(body []byte) []byte
}

const placeholder = "PLACEHOLDER-0f3c"

var badTexts = []badText{
	{"json NUL escape", func(b []byte) []byte { return bytes.ReplaceAll(b, []byte(placeholder), []byte(`a\u0000b`)) }},
	{"invalid UTF-8", func(b []byte) []byte { return bytes.ReplaceAll(b, []byte(placeholder), []byte("a\xffb")) }},
}

// stringFields lists the locations of the string properties of a create
// schema (base and type fields), "x" for a string, "x[0]" for an array of
// strings, taken from the served OpenAPI document so every registered type
// and every field it declares is covered.
func stringFields(t *testing.T, oapi *huma.OpenAPI, typeName string) []string {
	t.Helper()
	item := oapi.Paths["/api/v1/tasks/"+typeName]
	if item == nil || item.Post == nil {
		t.Fatalf("no typed create route for %s", typeName)
	}
	s := item.Post.RequestBody.Content["application/json"].Schema
	reg := oapi.Components.Schemas
	if s.Ref != "" {
		s = reg.SchemaFromRef(s.Ref)
	}
	var out []string
	for name, p := range s.Properties {
		if p.Ref != "" {
			p = reg.SchemaFromRef(p.Ref)
		}
		switch {
		case p.Type == huma.TypeString:
			out = append(out, name)
		case p.Type == huma.TypeArray && p.Items != nil && p.Items.Type == huma.TypeString:
			out = append(out, name+"[0]")
		}
	}
	if len(out) < 5 {
		t.Fatalf("%s: only %d string fields found: %v", typeName, len(out), out)
	}
	return out
}

// withField returns body (a copy) with the field at loc set to the
// placeholder.
func withField(body map[string]any, loc string) map[string]any {
	out := map[string]any{}
	for k, v := range body {
		out[k] = v
	}
	if name, ok := strings.CutSuffix(loc, "[0]"); ok {
		out[name] = []any{placeholder}
	} else {
		out[loc] = placeholder
	}
	return out
}

func marshal(t *testing.T, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// putInputs stores the example's input files.
func putInputs(t *testing.T, e *env, ex registry.Example) {
	t.Helper()
	for _, in := range ex.Inputs {
		if _, err := e.app.Artifacts.Put(context.Background(), in.Key, in.ContentType, in.Data); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTextFieldsOfEveryType sends a NUL (as a JSON escape) and an invalid
// UTF-8 byte in every string field of every registered type's create body,
// on the union and the typed route, and in every string field a PATCH
// accepts: each is a 422 naming the field, the same on both databases
// (PostgreSQL answered 500), and nothing is stored.
func TestTextFieldsOfEveryType(t *testing.T) {
	t.Parallel()
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			e := start(t, d, func(c *config.Config) { c.Workers = 0 })
			oapi := e.app.API.OpenAPI()
			for _, def := range e.app.Registry.All() {
				ex := def.Examples[0]
				putInputs(t, e, ex)
				valid := map[string]any{"run_at": "2099-01-01T00:00:00Z"}
				for k, v := range ex.Body {
					valid[k] = v
				}
				// The control: the example itself is accepted.
				created := e.must(201, "POST", "/api/v1/tasks/"+def.Name, valid)
				id := created["id"].(string)

				for _, loc := range stringFields(t, oapi, def.Name) {
					for _, bt := range badTexts {
						typed := bt.spoil(marshal(t, withField(valid, loc)))
						union := withField(valid, loc)
						if loc != "task_type" {
							union["task_type"] = def.Name
						}
						t.Run(def.Name+"/"+loc+"/"+bt.name, func(t *testing.T) {
							problemAt(t, e.do("POST", "/api/v1/tasks/"+def.Name, typed), 422, "body."+loc)
							problemAt(t, e.do("POST", "/api/v1/tasks/", bt.spoil(marshal(t, union))), 422, "body."+loc)
						})
					}
				}
				patchable := []string{"queue_name", "webhook_url", "webhook_events[0]"}
				for _, uf := range def.UpdateFields {
					if uf.Column.Kind == registry.KindString {
						patchable = append(patchable, uf.Column.JSONName)
					}
				}
				for _, loc := range patchable {
					for _, bt := range badTexts {
						body := bt.spoil(marshal(t, withField(map[string]any{}, loc)))
						t.Run(def.Name+"/PATCH "+loc+"/"+bt.name, func(t *testing.T) {
							problemAt(t, e.do("PATCH", "/api/v1/tasks/"+id, body), 422, "body."+loc)
						})
					}
				}
				list := e.must(200, "GET", "/api/v1/tasks/?task_type="+def.Name, nil)
				if items := list["items"].([]any); len(items) != 1 {
					t.Errorf("%s: %d tasks stored, want only the control", def.Name, len(items))
				}
				if got := e.must(200, "GET", "/api/v1/tasks/"+id, nil); got["updated_at"] != created["updated_at"] {
					t.Errorf("%s: a refused PATCH changed the task: %v", def.Name, got)
				}
			}
		})
	}
}

// TestTextInQueryAndHeaders: a NUL or an invalid UTF-8 byte in a query
// parameter or in a header the API reads is a 422 naming it, on the huma
// routes and on the raw SSE routes.
func TestTextInQueryAndHeaders(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		cases := []struct {
			name, method, path string
			hdr                []string
			loc                string
		}{
			{"queue_name %ff", "GET", "/api/v1/tasks/?queue_name=%ff", nil, "query.queue_name"},
			{"origin_tenant_id %00", "GET", "/api/v1/tasks/?origin_tenant_id=%00", nil, "query.origin_tenant_id"},
			{"task_type %00", "GET", "/api/v1/tasks/?task_type=echo%00", nil, "query.task_type"},
			{"cursor %c3%28", "GET", "/api/v1/tasks/?cursor=%c3%28", nil, "query.cursor"},
			{"firehose tenant %00", "GET", "/api/v1/events?origin_tenant_id=%00", nil, "query.origin_tenant_id"},
			{"firehose Last-Event-ID", "GET", "/api/v1/events", []string{"Last-Event-ID", "1\xff"}, "header.Last-Event-ID"},
			{"Idempotency-Key", "POST", "/api/v1/tasks/", []string{"Idempotency-Key", "key-\xff"}, "header.Idempotency-Key"},
			{"Idempotency-Key typed", "POST", "/api/v1/tasks/echo", []string{"Idempotency-Key", "\xc3"}, "header.Idempotency-Key"},
		}
		for _, tc := range cases {
			var body any
			if tc.method == "POST" {
				body = map[string]any{"task_type": "echo", "message": "x"}
			}
			r := e.do(tc.method, tc.path, body, tc.hdr...)
			t.Run(tc.name, func(t *testing.T) { problemAt(t, r, 422, tc.loc) })
		}
		if items := e.must(200, "GET", "/api/v1/tasks/", nil)["items"].([]any); len(items) != 0 {
			t.Errorf("refused creates stored %d tasks", len(items))
		}
		// The same values, valid, are accepted.
		e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "x"}, "Idempotency-Key", "key-é")
		e.must(200, "GET", "/api/v1/tasks/?queue_name=%C3%A9", nil)
	})
}

// TestProblemsCapRejectedValues: a problem quotes at most 200 characters
// of a rejected value, whatever its size.
func TestProblemsCapRejectedValues(t *testing.T) {
	t.Parallel()
	e := start(t, "sqlite", func(c *config.Config) { c.Workers = 0 })
	huge := strings.Repeat("x", 100<<10)
	cases := []struct {
		name, method, path string
		body               any
		hdr                []string
		loc                string
	}{
		{"too long field", "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "m", "queue_name": huge}, nil, "body.queue_name"},
		{"unknown type", "POST", "/api/v1/tasks/", map[string]any{"task_type": huge}, nil, "body.task_type"},
		{"bad enum", "POST", "/api/v1/tasks/echo", map[string]any{"message": "m", "provider_type": huge}, nil, "body.provider_type"},
		{"patch field", "PATCH", "", map[string]any{"queue_name": huge}, nil, "body.queue_name"},
		{"query", "GET", "/api/v1/tasks/?origin_tenant_id=" + huge[:30<<10], nil, nil, "query.origin_tenant_id"},
		{"stream position", "GET", "/api/v1/events", nil, []string{"Last-Event-ID", huge[:30<<10]}, "header.Last-Event-ID"},
	}
	id := e.must(201, "POST", "/api/v1/tasks/echo", map[string]any{"message": "m", "run_at": "2099-01-01T00:00:00Z"})["id"].(string)
	for _, tc := range cases {
		if tc.path == "" {
			tc.path = "/api/v1/tasks/" + id
		}
		r := e.do(tc.method, tc.path, tc.body, tc.hdr...)
		t.Run(tc.name, func(t *testing.T) {
			problemAt(t, r, 422, tc.loc)
			if len(r.body) > 2000 {
				t.Fatalf("problem of %d bytes echoes the rejected value: %.300s…", len(r.body), r.body)
			}
			for _, e := range r.json(t)["errors"].([]any) {
				em := e.(map[string]any)
				if v, ok := em["value"].(string); ok && em["location"] == tc.loc && !strings.HasSuffix(v, "…") {
					t.Errorf("value %q not marked as cut", v)
				}
			}
		})
	}
}

// A firehose filter that is not valid UTF-8 is a 422 on both databases,
// not a stream that closes at once.
func TestFirehoseInvalidTenantText(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		for _, q := range []string{"origin_tenant_id=%ff", "origin_tenant_id=a%00b", "task_type=%ff", "status=%ff"} {
			name := strings.SplitN(q, "=", 2)[0]
			problemAt(t, e.do("GET", "/api/v1/events?"+q, nil), 422, "query."+name)
		}
	})
}
