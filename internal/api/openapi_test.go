package api_test

import (
	"bytes"
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/computeserver/compute/internal/config"
)

// The properties of /openapi.json that client generators depend on
// (clientcheck/ runs the generators themselves; these tests keep the
// document right without them).

// walk calls fn for every JSON object in v with its path.
func walk(path string, v any, fn func(path string, obj map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		fn(path, x)
		for k, c := range x {
			walk(path+"/"+k, c, fn)
		}
	case []any:
		for i, c := range x {
			walk(path+"/"+strconv.Itoa(i), c, fn)
		}
	}
}

// openAPIDoc fetches the served document.
func openAPIDoc(t *testing.T, e *env) (map[string]any, map[string]any) {
	t.Helper()
	doc := e.must(200, "GET", "/openapi.json", nil, "Authorization", "")
	return doc, doc["components"].(map[string]any)["schemas"].(map[string]any)
}

const statusRef = "#/components/schemas/TaskStatus"

func TestOpenAPIForGenerators(t *testing.T) {
	t.Parallel()
	e := start(t, "sqlite", func(c *config.Config) { c.Workers = 0 })
	doc, schemas := openAPIDoc(t, e)
	raw, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("no huma internals", func(t *testing.T) {
		for _, bad := range []string{"V2Schema", "V2Discriminator", `"Properties"`, `"AdditionalProperties"`} {
			if strings.Contains(string(raw), bad) {
				t.Errorf("the document mentions %s", bad)
			}
		}
		set := schemas["TypeSchemaSet"].(map[string]any)["properties"].(map[string]any)
		for _, k := range []string{"create", "public", "update"} {
			if ref := set[k].(map[string]any)["$ref"]; ref != "#/components/schemas/JSONSchema" {
				t.Errorf("task-types schemas.%s is %v, want the free-form JSONSchema", k, ref)
			}
		}
		if js := schemas["JSONSchema"].(map[string]any); js["additionalProperties"] != true || js["properties"] != nil {
			t.Errorf("JSONSchema is not a free-form object: %v", js)
		}
	})

	t.Run("status is one enum", func(t *testing.T) {
		st := schemas["TaskStatus"].(map[string]any)
		if want := []any{"pending", "executing", "completed", "failed", "cancelled"}; !slices.Equal(st["enum"].([]any), want) {
			t.Errorf("TaskStatus enum %v", st["enum"])
		}
		// Every property that carries a task status refers to it.
		want := map[string]string{"ResultBody": "status", "EventBody": "status", "WebhookDelivery": "event_status"}
		for name := range schemas {
			if strings.HasSuffix(name, "TaskPublic") && name != "TaskPublic" {
				want[name] = "status"
			}
		}
		for name, prop := range want {
			p := schemas[name].(map[string]any)["properties"].(map[string]any)[prop].(map[string]any)
			if p["$ref"] != statusRef {
				t.Errorf("%s.%s is %v, want a $ref to TaskStatus", name, prop, p)
			}
		}
		// No inline copy of the enum anywhere else.
		walk("", doc, func(path string, obj map[string]any) {
			if enum, ok := obj["enum"].([]any); ok && len(enum) == 5 && slices.Contains(enum, any("executing")) && path != "/components/schemas/TaskStatus" {
				t.Errorf("%s repeats the status enum inline", path)
			}
		})
		// The filters take several statuses, each a TaskStatus.
		for _, p := range []string{"/api/v1/tasks/", "/api/v1/events"} {
			if items := queryParam(t, doc, p, "status")["items"].(map[string]any); items["$ref"] != statusRef {
				t.Errorf("%s status filter items %v", p, items)
			}
			for _, name := range []string{"status", "task_type"} {
				if s := queryParam(t, doc, p, name); s["type"] != "array" {
					t.Errorf("%s %s filter takes one value: %v", p, name, s)
				}
			}
		}
	})

	t.Run("task ids are uuids", func(t *testing.T) {
		walk("", doc, func(path string, obj map[string]any) {
			props, _ := obj["properties"].(map[string]any)
			for k, v := range props {
				if k == "task_id" || k == "id" && strings.Contains(path, "TaskPublic") {
					if f := v.(map[string]any)["format"]; f != "uuid" {
						t.Errorf("%s/properties/%s has format %v, want uuid", path, k, f)
					}
				}
			}
			if obj["name"] == "task_id" && obj["in"] == "path" {
				if f := obj["schema"].(map[string]any)["format"]; f != "uuid" {
					t.Errorf("%s: path task_id has format %v, want uuid", path, f)
				}
			}
		})
	})

	t.Run("no null arrays, defaults or anyOf", func(t *testing.T) {
		walk("", doc, func(path string, obj map[string]any) {
			if ty, ok := obj["type"].([]any); ok && slices.Contains(ty, any("array")) {
				t.Errorf("%s is a nullable array: %v", path, ty)
			}
			if strings.Contains(path, "/properties/default") || strings.HasSuffix(path, "/examples") {
				return
			}
			if _, ok := obj["default"]; ok && (obj["type"] != nil || obj["$ref"] != nil) {
				t.Errorf("%s has a default (generators make such fields required)", path)
			}
			if _, ok := obj["anyOf"]; ok {
				t.Errorf("%s is an anyOf (ogen refuses complex anyOf)", path)
			}
		})
	})

	t.Run("every component is referenced", func(t *testing.T) {
		paths, err := json.Marshal(doc["paths"])
		if err != nil {
			t.Fatal(err)
		}
		used := map[string]bool{}
		refRE := regexp.MustCompile(`#/components/schemas/([A-Za-z0-9_]+)`)
		queue := []string{string(paths)}
		for len(queue) > 0 {
			for _, m := range refRE.FindAllStringSubmatch(queue[0], -1) {
				if !used[m[1]] {
					used[m[1]] = true
					b, _ := json.Marshal(schemas[m[1]])
					queue = append(queue, string(b))
				}
			}
			queue = queue[1:]
		}
		for name := range schemas {
			if !used[name] {
				t.Errorf("component %s is not referenced", name)
			}
		}
		for name := range used {
			if schemas[name] == nil {
				t.Errorf("%s is referenced but missing", name)
			}
		}
	})

	t.Run("names", func(t *testing.T) {
		pascal := regexp.MustCompile(`^[A-Z][a-z0-9]*([A-Z][a-z0-9]*)*$`)
		for name := range schemas {
			if !pascal.MatchString(name) {
				t.Errorf("component name %q is not PascalCase", name)
			}
		}
		for _, want := range []string{"ImageAdjusterTaskCreate", "ImageAdjusterTaskPublic"} {
			if schemas[want] == nil {
				t.Errorf("no component %s", want)
			}
		}
		kebab := regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)
		seen := map[string]bool{}
		walk("", doc["paths"], func(path string, obj map[string]any) {
			id, ok := obj["operationId"].(string)
			if !ok {
				return
			}
			if seen[id] {
				t.Errorf("operationId %s is used twice", id)
			}
			seen[id] = true
			if !kebab.MatchString(id) {
				t.Errorf("operationId %q (%s) is not kebab-case", id, path)
			}
		})
		if !seen["create-image-adjuster-task"] {
			t.Errorf("no operation create-image-adjuster-task among %v", seen)
		}
	})

	t.Run("the union create body names task_type once", func(t *testing.T) {
		c := schemas["TaskCreate"].(map[string]any)
		for _, k := range []string{"properties", "required", "type"} {
			if c[k] != nil {
				t.Errorf("TaskCreate has %s beside its oneOf: %v", k, c[k])
			}
		}
		if c["oneOf"] == nil || c["discriminator"] == nil {
			t.Errorf("TaskCreate is not a discriminated oneOf: %v", c)
		}
		u := schemas["TaskUpdate"].(map[string]any)
		if u["type"] != "object" || u["properties"] == nil {
			t.Errorf("TaskUpdate is not one object: %v", u)
		}
	})

	t.Run("result is typed", func(t *testing.T) {
		art := schemas["TaskArtifact"].(map[string]any)["properties"].(map[string]any)
		for _, k := range []string{"url", "key", "content_type", "size", "width", "height", "seed"} {
			if art[k] == nil {
				t.Errorf("TaskArtifact has no %s", k)
			}
		}
		for _, name := range []string{"ResultBody", "EchoTaskPublic"} {
			p := schemas[name].(map[string]any)["properties"].(map[string]any)["result"].(map[string]any)
			if p["$ref"] != "#/components/schemas/TaskResult" {
				t.Errorf("%s.result is %v", name, p)
			}
		}
	})
}

// TestTaskTypeSchemasStandAlone: the schemas GET /task-types serves refer
// to nothing outside themselves.
func TestTaskTypeSchemasStandAlone(t *testing.T) {
	t.Parallel()
	e := start(t, "sqlite", func(c *config.Config) { c.Workers = 0 })
	types := e.must(200, "GET", "/api/v1/task-types", nil)["types"].([]any)
	for _, it := range types {
		m := it.(map[string]any)
		for kind, s := range m["schemas"].(map[string]any) {
			sm := s.(map[string]any)
			if sm["type"] != "object" || sm["properties"] == nil {
				t.Errorf("%v %s schema is not an object schema: %v", m["name"], kind, sm)
			}
			defs, _ := sm["$defs"].(map[string]any)
			walk("", sm, func(path string, obj map[string]any) {
				ref, ok := obj["$ref"].(string)
				if !ok {
					return
				}
				name, found := strings.CutPrefix(ref, "#/$defs/")
				if !found || defs[name] == nil {
					t.Errorf("%v %s schema: %s refers to %s, which it does not hold", m["name"], kind, path, ref)
				}
			})
		}
	}
}

// queryParam returns the schema of a GET operation's query parameter.
func queryParam(t *testing.T, doc map[string]any, path, name string) map[string]any {
	t.Helper()
	op := doc["paths"].(map[string]any)[path].(map[string]any)["get"].(map[string]any)
	for _, p := range op["parameters"].([]any) {
		pm := p.(map[string]any)
		if pm["name"] == name && pm["in"] == "query" {
			return pm["schema"].(map[string]any)
		}
	}
	t.Fatalf("%s has no query parameter %s", path, name)
	return nil
}

// TestResponsesHaveNoNullArrays reads every kind of response and checks
// that no property the document declares as an array is null, and that
// result is absent (not null) until there is one.
func TestResponsesHaveNoNullArrays(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		_, schemas := openAPIDoc(t, e)
		arrays := map[string]bool{}
		walk("", schemas, func(_ string, obj map[string]any) {
			props, _ := obj["properties"].(map[string]any)
			for k, v := range props {
				if v.(map[string]any)["type"] == "array" {
					arrays[k] = true
				}
			}
		})
		pending := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "later", "run_at": "2099-01-01T00:00:00Z"})
		done := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "generation", "prompt": "a dress", "width": 64, "height": 64, "seed": 7})
		e.waitStatus(done["id"].(string), "completed")
		bodies := map[string]any{"create": pending}
		for _, p := range []string{
			"/api/v1/tasks/" + pending["id"].(string), "/api/v1/tasks/" + done["id"].(string),
			"/api/v1/tasks/" + pending["id"].(string) + "/result", "/api/v1/tasks/" + done["id"].(string) + "/result",
			"/api/v1/tasks/", "/api/v1/task-types", "/api/v1/tasks/" + pending["id"].(string) + "/webhooks",
		} {
			bodies[p] = e.must(200, "GET", p, nil)
		}
		for name, b := range bodies {
			walk(name, b, func(path string, obj map[string]any) {
				if strings.Contains(path, "/schemas/") {
					return // JSON Schemas served as data
				}
				for k, v := range obj {
					if v == nil && arrays[k] {
						t.Errorf("%s: %s is null, want an array", path, k)
					}
					if k == "result" && v == nil {
						t.Errorf("%s: result is null, want it absent", path)
					}
				}
			})
		}
		res := bodies["/api/v1/tasks/"+done["id"].(string)+"/result"].(map[string]any)
		arts := res["result"].(map[string]any)["artifacts"].([]any)
		if len(arts) != 1 {
			t.Fatalf("artifacts %v", arts)
		}
		a := arts[0].(map[string]any)
		if a["width"] != float64(64) || a["height"] != float64(64) || a["seed"] != float64(7) || a["url"] == "" {
			t.Errorf("artifact %v lacks its url, size or seed", a)
		}
	})
}

// The document and the routes agree: the redelivery id is an int64, 415
// is declared where bodies are read, the artifact is any media type, and
// an unknown schema name is a 404 problem.
func TestOpenAPIAgreesWithRoutes(t *testing.T) {
	t.Parallel()
	e := start(t, "sqlite")
	doc := e.must(200, "GET", "/openapi.json", nil)
	paths := doc["paths"].(map[string]any)
	op := func(path, method string) map[string]any {
		t.Helper()
		m, _ := paths[path].(map[string]any)[method].(map[string]any)
		if m == nil {
			t.Fatalf("no %s %s", method, path)
		}
		return m
	}
	redeliver := op("/api/v1/webhooks/deliveries/{id}/redeliver", "post")
	p := redeliver["parameters"].([]any)[0].(map[string]any)["schema"].(map[string]any)
	if p["type"] != "integer" || p["format"] != "int64" {
		t.Errorf("redeliver id schema %v, want integer int64", p)
	}
	problemAt(t, e.do("POST", "/api/v1/webhooks/deliveries/abc/redeliver", nil), 404, "")
	for _, o := range []map[string]any{op("/api/v1/tasks/", "post"), op("/api/v1/tasks/echo", "post"), op("/api/v1/tasks/{task_id}", "patch")} {
		if _, ok := o["responses"].(map[string]any)["415"]; !ok {
			t.Errorf("%s declares no 415", o["operationId"])
		}
	}
	art := op("/api/v1/artifacts/{key}", "get")["responses"].(map[string]any)
	if _, ok := art["200"].(map[string]any)["content"].(map[string]any)["*/*"]; !ok {
		t.Errorf("artifact 200 content %v, want */*", art["200"])
	}
	if _, ok := art["416"]; !ok {
		t.Errorf("artifact declares no 416")
	}
	problemAt(t, e.do("GET", "/schemas/Task.json", nil), 404, "")
	problemAt(t, e.do("GET", "/schemas/NoSuchThing", nil), 404, "")
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	for name := range schemas {
		if r := e.do("GET", "/schemas/"+name+".json", nil); r.status != 200 || bytes.Equal(bytes.TrimSpace(r.body), []byte("null")) {
			t.Errorf("/schemas/%s.json: status %d %s", name, r.status, r.body)
		}
		break
	}
}
