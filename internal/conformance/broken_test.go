package conformance

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store/schema"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks"
	"github.com/computeserver/compute/internal/tasks/echo"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// The "broken" test-only type is half-done in every way the suite must
// catch: no examples, and a table without its size column.
type brokenFields struct {
	Label string `json:"label" db:"label"`
	Size  int    `json:"size" db:"size"`
}

var brokenMigrations = fstest.MapFS{
	"sqlite/20990101000001_broken.sql": {Data: []byte(
		"-- +goose Up\nCREATE TABLE broken_tasks (id TEXT PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE, label TEXT NOT NULL);\n")},
	"postgres/20990101000001_broken.sql": {Data: []byte(
		"-- +goose Up\nCREATE TABLE broken_tasks (id UUID PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE, label TEXT NOT NULL);\n")},
}

func brokenType() registry.Type[brokenFields, struct{}] {
	return registry.Type[brokenFields, struct{}]{
		Name: "broken",
		Processor: registry.ProcessorFunc[brokenFields](func(context.Context, *registry.Job[brokenFields]) (*task.Result, error) {
			return &task.Result{}, nil
		}),
		Migrations: brokenMigrations,
	}
}

func declare(t *testing.T, d registry.Declaration) *registry.Definition {
	t.Helper()
	def, err := d.Declare()
	if err != nil {
		t.Fatal(err)
	}
	return def
}

// wantErr fails unless err contains every part of want.
func wantErr(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not contain %q:\n%v", w, err)
		}
	}
}

func TestCheckDeclarationNamesWhatIsMissing(t *testing.T) {
	t.Parallel()
	succeeds := registry.Example{Name: "ok", Body: map[string]any{"label": "x", "size": 1}, WantStatus: task.StatusCompleted}
	fails := registry.Example{Name: "no", Body: map[string]any{"label": "y", "size": 2}, WantStatus: task.StatusFailed}
	tests := []struct {
		name   string
		change func(def *registry.Definition)
		want   []string // nil: no error
	}{
		{name: "complete", change: func(d *registry.Definition) { d.Examples = []registry.Example{succeeds, fails} }},
		{name: "no examples", change: func(*registry.Definition) {}, want: []string{
			`task type "broken": has no example that completes: add a registry.Example{Name: …, Body: …, WantStatus: task.StatusCompleted} to Examples in its Type()`,
			`task type "broken": has no example that fails`, "docs/adding-a-task-type.md"}},
		{name: "no failing example", change: func(d *registry.Definition) { d.Examples = []registry.Example{succeeds} },
			want: []string{"has no example that fails", "task.StatusFailed"}},
		{name: "no postgres migration", change: func(d *registry.Definition) {
			d.Examples = []registry.Example{succeeds, fails}
			d.Migrations = fstest.MapFS{"sqlite/1_x.sql": brokenMigrations["sqlite/20990101000001_broken.sql"]}
		}, want: []string{`has no postgres migration: add migrations/postgres/<version>_broken.sql`, "compute migrate diff --write"}},
		{name: "no processor", change: func(d *registry.Definition) {
			d.Examples = []registry.Example{succeeds, fails}
			d.Processor = nil
		}, want: []string{"has no processor"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			def := declare(t, brokenType())
			tt.change(def)
			err := CheckDeclaration(def)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantErr(t, err, tt.want...)
		})
	}
}

// TestRegistryRefusesMissingDialect: a type without migrations for one
// database does not even register, and the message says how to fix it.
func TestRegistryRefusesMissingDialect(t *testing.T) {
	t.Parallel()
	ty := brokenType()
	ty.Migrations = fstest.MapFS{"sqlite/1_x.sql": brokenMigrations["sqlite/20990101000001_broken.sql"]}
	wantErr(t, registry.New().Register(ty), "no postgres/*.sql migrations", "add migrations/postgres/<version>_broken.sql")
}

// TestCheckTableShowsTheMigration: the table lacks a column of the model.
func TestCheckTableShowsTheMigration(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			reg := registry.New()
			reg.MustRegister(brokenType())
			def, _ := reg.Lookup("broken")
			d, err := schema.Compare(t.Context(), testdb.Open(t, dialect, reg), def)
			if err != nil {
				t.Fatal(err)
			}
			wantErr(t, CheckTable(d), "table broken_tasks of task type \"broken\" differs from its model",
				"missing column size", "ALTER TABLE broken_tasks ADD COLUMN size", "compute migrate diff --write")
		})
	}
}

// TestCheckSchemasHalfRegistered: a type the server was not given is in
// neither the unions nor the listing; a document whose unions lack a type
// is caught union by union.
func TestCheckSchemasHalfRegistered(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "sqlite", func(reg *registry.Registry, _ tasks.Deps) error {
		return reg.Register(echo.Type())
	})
	ctx := t.Context()
	doc, err := srv.call(ctx, http.MethodGet, "/openapi.json", nil)
	if err != nil {
		t.Fatal(err)
	}
	types, err := srv.call(ctx, http.MethodGet, "/api/v1/task-types", nil)
	if err != nil {
		t.Fatal(err)
	}
	echoDef, _ := srv.app.Registry.Lookup(echo.Name)
	if err := CheckSchemas(echoDef, doc.body, types.body); err != nil {
		t.Fatalf("echo, served: %v", err)
	}
	wantErr(t, CheckSchemas(declare(t, brokenType()), doc.body, types.body),
		`task type "broken": is not listed by GET /api/v1/task-types`, "internal/tasks/register.go")

	// Take echo out of each union in turn.
	var parsed map[string]any
	if err := json.Unmarshal(doc.body, &parsed); err != nil {
		t.Fatal(err)
	}
	schemas := parsed["components"].(map[string]any)["schemas"].(map[string]any)
	for _, tt := range []struct {
		union string
		cut   func(u map[string]any)
		want  string
	}{
		{"TaskCreate", func(u map[string]any) {
			delete(u["discriminator"].(map[string]any)["mapping"].(map[string]any), echo.Name)
		},
			"has no entry in the discriminator mapping of the OpenAPI TaskCreate union"},
		{"TaskPublic", func(u map[string]any) { u["oneOf"] = []any{} }, "but not in oneOf of the OpenAPI TaskPublic union"},
		{"TaskUpdate", func(u map[string]any) { u["properties"] = map[string]any{} }, "is not in the OpenAPI TaskUpdate schema"},
	} {
		orig := schemas[tt.union]
		raw, _ := json.Marshal(orig)
		var u map[string]any
		_ = json.Unmarshal(raw, &u)
		tt.cut(u)
		schemas[tt.union] = u
		broken, _ := json.Marshal(parsed)
		wantErr(t, CheckSchemas(echoDef, broken, types.body), tt.want)
		schemas[tt.union] = orig
	}
}

// TestRunExampleCatchesWrongOutcomes: an example whose processor path
// does not end as declared, or whose body the API refuses, fails.
func TestRunExampleCatchesWrongOutcomes(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "sqlite", nil)
	def, _ := srv.app.Registry.Lookup(echo.Name)
	tests := []struct {
		name string
		ex   registry.Example
		want string
	}{
		{"completes but claims to fail", registry.Example{Name: "x", Body: map[string]any{"message": "hi"}, WantStatus: task.StatusFailed},
			"the task ended completed, want failed"},
		{"fails but claims to complete", registry.Example{Name: "x", Body: map[string]any{"message": "hi", "fail_with": "boom"}, WantStatus: task.StatusCompleted},
			`the task ended failed, want completed (error_message "boom"`},
		{"fails with another error", registry.Example{Name: "x", Body: map[string]any{"message": "hi", "fail_with": "boom"}, WantStatus: task.StatusFailed, WantError: "bang"},
			`the task failed with "boom", want an error containing "bang"`},
		{"invalid body", registry.Example{Name: "x", Body: map[string]any{"message": ""}, WantStatus: task.StatusCompleted},
			"creating the task: POST /api/v1/tasks/ answered 422"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := srv.runExample(t.Context(), def, tt.ex, false)
			wantErr(t, err, `task type "echo", example "x"`, tt.want)
		})
	}
	t.Run("mislabelled task", func(t *testing.T) {
		t.Parallel()
		id, err := srv.runExample(t.Context(), def, def.Examples[0], false)
		if err != nil {
			t.Fatal(err)
		}
		// The routes check must notice a task served (or not) by the
		// wrong type's route: claim the echo task is a "broken" one.
		wantErr(t, srv.checkRoutes(t.Context(), srv.app.Registry, map[string][]string{"broken": {id}}),
			"GET /api/v1/tasks/echo/"+id+" (a broken task) answered 200 (<nil>), want 404")
	})
}

// TestCheckRegisteredFindsOrphanFolder: a type folder without its line in
// register.go.
func TestCheckRegisteredFindsOrphanFolder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, src := range map[string]string{
		"echo/echo.go":           "package echo\nvar _ = registry.Type[int, int]{}\n",
		"orphan/orphan.go":       "package orphan\nfunc Type() registry.Type[Fields, Update] { return registry.Type[Fields, Update]{} }\n",
		"helpers/helpers.go":     "package helpers\n",
		"testonly/x_test.go":     "package testonly\nvar _ = registry.Type[int, int]{}\n",
		"register.go.not-a-type": "",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	reg := registry.New()
	reg.MustRegister(echo.Type())
	err := CheckRegistered(dir, reg)
	wantErr(t, err, "orphan declares a task type that is not registered: add `orphan.Type(),`", "internal/tasks/register.go")
	for _, not := range []string{"helpers", "testonly", "echo "} {
		if strings.Contains(err.Error(), not) {
			t.Errorf("%s reported:\n%v", not, err)
		}
	}
}
