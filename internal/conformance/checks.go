package conformance

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store/schema"
	"github.com/computeserver/compute/internal/store/sqlstore"
	"github.com/computeserver/compute/internal/task"
)

// docHint points at the cookbook in every failure message.
const docHint = "see docs/adding-a-task-type.md"

// CheckDeclaration checks what a type declares: a processor, migrations
// for both databases, and at least one example that completes and one
// that fails.
func CheckDeclaration(def *registry.Definition) error {
	var errs []error
	fail := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("task type %q: "+format, append([]any{def.Name}, a...)...))
	}
	if def.Processor == nil {
		fail("has no processor: set Processor in its Type() (%s, \"The processor\")", docHint)
	}
	for _, dialect := range []string{sqlstore.DialectSQLite, sqlstore.DialectPostgres} {
		var files []string
		if def.Migrations != nil {
			files, _ = fs.Glob(def.Migrations, dialect+"/*.sql")
		}
		if len(files) == 0 {
			fail("has no %s migration: add migrations/%s/<version>_%s.sql to its folder and embed it; "+
				"`compute migrate diff --write` writes it from the model (%s, \"Migrations\")", dialect, dialect, def.Name, docHint)
		}
	}
	for _, want := range []task.Status{task.StatusCompleted, task.StatusFailed} {
		if !slices.ContainsFunc(def.Examples, func(ex registry.Example) bool { return ex.WantStatus == want }) {
			verb := map[task.Status]string{task.StatusCompleted: "completes", task.StatusFailed: "fails"}[want]
			fail("has no example that %s: add a registry.Example{Name: …, Body: …, WantStatus: task.Status%s} to Examples in its Type(), "+
				"so the suite runs that path of its processor (%s, \"Examples\")", verb, title(string(want)), docHint)
		}
	}
	return errors.Join(errs...)
}

func title(s string) string { return strings.ToUpper(s[:1]) + s[1:] }

// CheckTable turns the drift of a type's table into an error that shows
// the migration to add. Leftover columns the model no longer has, which
// allow NULL or have a default, are not an error: they break nothing and
// wait for a person to drop them (Run logs them).
func CheckTable(d schema.TableDrift) error {
	if !d.Blocking() {
		return nil
	}
	sql, err := d.Migration()
	if err != nil {
		sql = "(the migration could not be written: " + err.Error() + ")"
	}
	return fmt.Errorf("%s\nThe type's migrations do not build the table its model needs. Run `compute migrate diff --write` "+
		"to add the migration to the type's folder, or write it by hand (%s, \"Migrations\"):\n%s", d, docHint, sql)
}

// CheckSchemas checks that the OpenAPI document (openAPI, the JSON of
// /openapi.json) and the registry listing (taskTypes, the JSON of
// /api/v1/task-types) show a type's create, public and update schemas, in
// the TaskCreate, TaskPublic and TaskUpdate unions, with its fields.
func CheckSchemas(def *registry.Definition, openAPI, taskTypes []byte) error {
	var doc struct {
		Components struct {
			Schemas map[string]json.RawMessage `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		return fmt.Errorf("decoding the OpenAPI document: %w", err)
	}
	var listing struct {
		Types []listedType `json:"types"`
	}
	if err := json.Unmarshal(taskTypes, &listing); err != nil {
		return fmt.Errorf("decoding /api/v1/task-types: %w", err)
	}
	notServed := fmt.Sprintf("the API builds its schemas from the registry it is given, so the server does not know task type %q: "+
		"add `<package>.Type(),` to Register in internal/tasks/register.go, or register it in your app.Options.Register (%s)", def.Name, docHint)

	var errs []error
	fail := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("task type %q: "+format, append([]any{def.Name}, a...)...))
	}
	i := slices.IndexFunc(listing.Types, func(t listedType) bool { return t.Name == def.Name })
	if i < 0 {
		fail("is not listed by GET /api/v1/task-types; %s", notServed)
		return errors.Join(errs...)
	}
	listed := listing.Types[i].Schemas

	for _, u := range []struct{ union, schema string }{{"TaskCreate", "create"}, {"TaskPublic", "public"}} {
		union, err := schemaOf(doc.Components.Schemas, u.union)
		if err != nil {
			fail("%v", err)
			continue
		}
		ref := union.Discriminator.Mapping[def.Name]
		switch {
		case ref == "":
			fail("has no entry in the discriminator mapping of the OpenAPI %s union; %s", u.union, notServed)
			continue
		case !slices.ContainsFunc(union.OneOf, func(s refSchema) bool { return s.Ref == ref }):
			fail("its %s schema %s is in the discriminator mapping but not in oneOf of the OpenAPI %s union", u.schema, ref, u.union)
		}
		component := doc.Components.Schemas[strings.TrimPrefix(ref, "#/components/schemas/")]
		if component == nil {
			fail("its %s schema %s is missing from components.schemas", u.schema, ref)
			continue
		}
		served := map[string]json.RawMessage{"create": listed.Create, "public": listed.Public}[u.schema]
		if !jsonEqual(component, asComponent(served)) {
			fail("its %s schema at %s differs from the one GET /api/v1/task-types lists", u.schema, ref)
		}
		if err := checkProperties(def, u.schema, component); err != nil {
			fail("%v", err)
		}
	}
	update, err := schemaOf(doc.Components.Schemas, "TaskUpdate")
	if err != nil {
		fail("%v", err)
	} else {
		var own struct {
			Properties map[string]json.RawMessage `json:"properties"`
		}
		if err := json.Unmarshal(listed.Update, &own); err != nil {
			fail("decoding its update schema: %v", err)
		}
		for _, k := range slices.Sorted(maps.Keys(own.Properties)) {
			if update.Properties[k] == nil {
				fail("its update field %s (as GET /api/v1/task-types lists it) is not in the OpenAPI TaskUpdate schema; %s", k, notServed)
			}
		}
	}
	if err := checkProperties(def, "update", listed.Update); err != nil {
		fail("%v", err)
	}
	return errors.Join(errs...)
}

// listedType is one entry of GET /api/v1/task-types.
type listedType struct {
	Name    string `json:"name"`
	Schemas struct {
		Create json.RawMessage `json:"create"`
		Public json.RawMessage `json:"public"`
		Update json.RawMessage `json:"update"`
	} `json:"schemas"`
}

// refSchema is a schema reference in a union.
type refSchema struct {
	Ref string `json:"$ref"`
}

// unionSchema is the part of a union schema the checks read (TaskUpdate
// is one object with every type's update fields).
type unionSchema struct {
	OneOf         []refSchema                `json:"oneOf"`
	Properties    map[string]json.RawMessage `json:"properties"`
	Discriminator struct {
		Mapping map[string]string `json:"mapping"`
	} `json:"discriminator"`
}

func schemaOf(schemas map[string]json.RawMessage, name string) (*unionSchema, error) {
	raw := schemas[name]
	if raw == nil {
		return nil, fmt.Errorf("the OpenAPI document has no %s schema", name)
	}
	var u unionSchema
	if err := json.Unmarshal(raw, &u); err != nil {
		return nil, fmt.Errorf("decoding the OpenAPI %s schema: %w", name, err)
	}
	return &u, nil
}

// checkProperties checks that a schema has the type's fields: every
// writable column in create, every column in public, every PATCH field in
// update; and that create and public pin task_type to the type.
func checkProperties(def *registry.Definition, kind string, raw json.RawMessage) error {
	var s struct {
		Properties map[string]struct {
			Enum []any `json:"enum"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("decoding its %s schema: %w", kind, err)
	}
	var want []string
	switch kind {
	case "create", "public":
		if tt := s.Properties["task_type"].Enum; len(tt) != 1 || tt[0] != def.Name {
			return fmt.Errorf("its %s schema's task_type enum is %v, want [%s]", kind, tt, def.Name)
		}
		for _, c := range def.Columns {
			if kind == "public" || !c.ReadOnly {
				want = append(want, c.JSONName)
			}
		}
	case "update":
		for _, u := range def.UpdateFields {
			want = append(want, u.Column.JSONName)
		}
	}
	var missing []string
	for _, name := range want {
		if _, ok := s.Properties[name]; !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("its %s schema lacks the fields %s", kind, strings.Join(missing, ", "))
	}
	return nil
}

// jsonEqual reports whether two JSON documents are equal as values.
// asComponent turns a schema as GET /api/v1/task-types serves it (its
// components under $defs) back into the component it was made from.
func asComponent(served json.RawMessage) json.RawMessage {
	var obj map[string]json.RawMessage
	if json.Unmarshal(served, &obj) != nil {
		return served
	}
	delete(obj, "$defs")
	raw, err := json.Marshal(obj)
	if err != nil {
		return served
	}
	return bytes.ReplaceAll(raw, []byte(`"#/$defs/`), []byte(`"#/components/schemas/`))
}

func jsonEqual(a, b []byte) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// CheckRegistered checks that every task type package under tasksDir
// (internal/tasks: a folder whose Go files declare a registry.Type) is
// registered: a folder without its line in register.go is the most common
// half-registration.
func CheckRegistered(tasksDir string, reg *registry.Registry) error {
	entries, err := os.ReadDir(tasksDir)
	if err != nil {
		return fmt.Errorf("listing task type folders: %w", err)
	}
	registered := map[string]bool{}
	for _, def := range reg.All() {
		pkg := def.Model.PkgPath()
		registered[pkg[strings.LastIndex(pkg, "/")+1:]] = true
	}
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || registered[e.Name()] {
			continue
		}
		declares, err := declaresType(filepath.Join(tasksDir, e.Name()))
		if err != nil {
			return err
		}
		if declares {
			errs = append(errs, fmt.Errorf("%s declares a task type that is not registered: add `%s.Type(),` (and its import) "+
				"to the list in Register, internal/tasks/register.go (%s)", filepath.Join(tasksDir, e.Name()), e.Name(), docHint))
		}
	}
	return errors.Join(errs...)
}

// declaresType reports whether a folder's non-test Go files declare a
// registry.Type.
func declaresType(dir string) (bool, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return false, err
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			return false, err
		}
		if strings.Contains(string(src), "registry.Type[") {
			return true, nil
		}
	}
	return false, nil
}
