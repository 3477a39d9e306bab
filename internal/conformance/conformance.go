// Package conformance is the checklist of a task type, as tests. Run goes
// over every registered type, on SQLite and on PostgreSQL, through a real
// server, and fails with a message that says what is missing and how to
// fix it when a type is half-registered:
//
//   - its declaration has a processor, migrations for both databases, and
//     examples that complete and fail (CheckDeclaration);
//   - the OpenAPI document has its create, public and update schemas in
//     the TaskCreate, TaskPublic and TaskUpdate unions, and
//     GET /api/v1/task-types lists them (CheckSchemas);
//   - its table exists after migration and its columns match its model
//     (CheckTable, from the store's drift check);
//   - each example, created through POST /api/v1/tasks/ (the first also
//     through POST /api/v1/tasks/{type}), reads back as its concrete type
//     and reaches the status it declares: the processor's success and
//     failure paths;
//   - a task can be patched through its update schema;
//   - a task of another type is never returned through its typed routes.
//
// The built-in types are checked by this package's tests; a program that
// registers its own types checks them with Run and its own Register
// function (see examples/custom-type).
package conformance

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/store/schema"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// Options select what Run checks.
type Options struct {
	// Register adds the task types under test, as app.Options.Register
	// does (default tasks.Register, the built-in types).
	Register app.RegisterFunc
	// ExampleTimeout bounds how long one example may take to finish
	// (default 2 minutes).
	ExampleTimeout time.Duration
}

// Run runs the suite over every type Register adds.
func Run(t *testing.T, opts Options) {
	t.Helper()
	if opts.ExampleTimeout <= 0 {
		opts.ExampleTimeout = 2 * time.Minute
	}
	reg, err := app.NewRegistry(app.NewFetcher(config.Default(), nil), opts.Register)
	if err != nil {
		t.Fatalf("registering the task types: %v", err)
	}
	t.Run("Declarations", func(t *testing.T) {
		t.Parallel()
		for _, def := range reg.All() {
			t.Run(def.Name, func(t *testing.T) {
				t.Parallel()
				if err := CheckDeclaration(def); err != nil {
					t.Error(err)
				}
			})
		}
	})
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			runDialect(t, dialect, opts)
		})
	}
}

// runDialect checks every type against one real server on one database.
func runDialect(t *testing.T, dialect string, opts Options) {
	srv := startServer(t, dialect, opts.Register)
	ctx := t.Context()
	openAPI, err := srv.call(ctx, http.MethodGet, "/openapi.json", nil)
	if err != nil || openAPI.status != http.StatusOK {
		t.Fatalf("GET /openapi.json: %d %v", openAPI.status, err)
	}
	types, err := srv.call(ctx, http.MethodGet, "/api/v1/task-types", nil)
	if err != nil || types.status != http.StatusOK {
		t.Fatalf("GET /api/v1/task-types: %d %v", types.status, err)
	}
	if !json.Valid(openAPI.body) || !json.Valid(types.body) {
		t.Fatal("the OpenAPI document or the task type listing is not JSON")
	}
	st, ok := srv.app.Store.(schema.Inspector)
	if !ok {
		t.Fatalf("the store %T cannot list its tables' columns (schema.Inspector)", srv.app.Store)
	}

	var mu sync.Mutex
	ids := map[string][]string{}
	t.Run("Types", func(t *testing.T) {
		for _, def := range srv.app.Registry.All() {
			t.Run(def.Name, func(t *testing.T) {
				t.Parallel()
				t.Run("Schemas", func(t *testing.T) {
					if err := CheckSchemas(def, openAPI.body, types.body); err != nil {
						t.Error(err)
					}
				})
				t.Run("Table", func(t *testing.T) {
					d, err := schema.Compare(t.Context(), st, def)
					if err != nil {
						t.Fatal(err)
					}
					if err := CheckTable(d); err != nil {
						t.Error(err)
					} else if len(d.Differences) > 0 {
						t.Logf("note: %s", d)
					}
				})
				t.Run("Update", func(t *testing.T) {
					if err := srv.checkUpdate(t.Context(), def); err != nil {
						t.Error(err)
					}
				})
				for i, ex := range def.Examples {
					t.Run("Example/"+ex.Name, func(t *testing.T) {
						t.Parallel()
						for _, typed := range []bool{false, true} {
							if typed && i > 0 {
								continue // the typed route once per type is enough
							}
							ctx, cancel := context.WithTimeout(t.Context(), opts.ExampleTimeout)
							id, err := srv.runExample(ctx, def, ex, typed)
							cancel()
							if err != nil {
								t.Error(err)
								continue
							}
							mu.Lock()
							ids[def.Name] = append(ids[def.Name], id)
							mu.Unlock()
						}
					})
				}
			})
		}
	})
	t.Run("Routes", func(t *testing.T) {
		if err := srv.checkRoutes(t.Context(), srv.app.Registry, ids); err != nil {
			t.Error(err)
		}
	})
}
