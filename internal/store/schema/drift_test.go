package schema_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/store/schema"
	"github.com/computeserver/compute/internal/store/sqlstore"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// The "evolving" test type: version 1 of its model and table, then a
// version 2 model whose table needs a migration of every kind.
const evolving = "evolving"

type evolvingV1 struct {
	Name   string  `json:"name" db:"name"`
	Count  int     `json:"count" db:"count"`
	Note   *string `json:"note,omitempty" db:"note"`
	Legacy string  `json:"legacy" db:"legacy"`
}

// evolvingV2 adds size (with a default), tags and when; count becomes a
// float; note is no longer optional; legacy is gone.
type evolvingV2 struct {
	Name  string     `json:"name" db:"name"`
	Count float64    `json:"count" db:"count"`
	Note  string     `json:"note" db:"note"`
	Size  int        `json:"size" db:"size" default:"3"`
	Tags  []string   `json:"tags" db:"tags"`
	When  *time.Time `json:"when,omitempty" db:"when"`
	Order int        `json:"position" db:"order"`
}

var evolvingV1Migrations = map[string]string{
	"sqlite": `-- +goose Up
CREATE TABLE evolving_tasks (
    id     TEXT PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    name   TEXT NOT NULL,
    count  INTEGER NOT NULL,
    note   TEXT,
    legacy TEXT NOT NULL
);
-- +goose Down
DROP TABLE evolving_tasks;
`,
	"postgres": `-- +goose Up
CREATE TABLE evolving_tasks (
    id     UUID PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    name   TEXT NOT NULL,
    count  BIGINT NOT NULL,
    note   TEXT,
    legacy TEXT NOT NULL
);
-- +goose Down
DROP TABLE evolving_tasks;
`,
}

// migrationFiles holds one migration of dialect, and a no-op for the other
// dialect, which Declare requires and the test's store never reads.
func migrationFiles(dialect, name, sql string) fstest.MapFS {
	other := "postgres"
	if dialect == other {
		other = "sqlite"
	}
	return fstest.MapFS{
		dialect + "/" + name:               {Data: []byte(sql)},
		other + "/20990101000000_noop.sql": {Data: []byte("-- +goose Up\nSELECT 1;\n")},
	}
}

func evolvingType[M any](files fstest.MapFS) registry.Type[M, struct{}] {
	return registry.Type[M, struct{}]{
		Name: evolving,
		Processor: registry.ProcessorFunc[M](func(context.Context, *registry.Job[M]) (*task.Result, error) {
			return &task.Result{}, nil
		}),
		Migrations: files,
	}
}

// migrated is a migrated store with the registry it was opened with.
type migrated struct {
	*sqlstore.Store
	reg *registry.Registry
}

// Drift compares every table of the store's types with its model.
func (m migrated) Drift(ctx context.Context) ([]schema.TableDrift, error) {
	return schema.Drift(ctx, m.Store, m.reg)
}

// openWith opens and migrates the database at url for one type.
func openWith(t *testing.T, url string, decl registry.Declaration) (migrated, *registry.Definition) {
	t.Helper()
	reg := registry.New()
	reg.MustRegister(decl)
	def, _ := reg.Lookup(evolving)
	st, err := sqlstore.Open(context.Background(), url, reg, testdb.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatalf("migrating: %v", err)
	}
	return migrated{st, reg}, def
}

func kinds(d schema.TableDrift) []string {
	var out []string
	for _, x := range d.Differences {
		out = append(out, string(x.Kind)+" "+x.Column)
	}
	return out
}

// TestDriftMigrationFixesTable evolves a model with a row in its table:
// the drift names every change, the migration it writes applies, keeps
// the row, and leaves only the column the model dropped (whose DROP is a
// decision left to a person).
func TestDriftMigrationFixesTable(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			url := testdb.URL(t, dialect)
			files := migrationFiles(dialect, "20990101000001_evolving.sql", evolvingV1Migrations[dialect])

			// Version 1 matches its table; store a task.
			st1, def1 := openWith(t, url, evolvingType[evolvingV1](files))
			if drift, err := st1.Drift(ctx); err != nil || len(drift) != 0 {
				t.Fatalf("version 1: drift %v (%v), want none", drift, err)
			}
			now := task.Now()
			tk := &task.Task{ID: uuid.New(), Type: evolving, Status: task.StatusPending, ProviderType: "local",
				QueueName: "default", MaxAttempts: 1, TimeoutSeconds: 60, CreatedAt: now, UpdatedAt: now, RunAt: now,
				Errors: []task.Error{}}
			if _, _, err := st1.CreateTask(ctx, &store.Record{Task: tk, Def: def1,
				Fields: &evolvingV1{Name: "old", Count: 7, Legacy: "x"}}); err != nil {
				t.Fatal(err)
			}
			st1.Close()

			// Version 2 of the model on the same database.
			st2, _ := openWith(t, url, evolvingType[evolvingV2](files))
			drift, err := st2.Drift(ctx)
			if err != nil || len(drift) != 1 {
				t.Fatalf("version 2: drift %v (%v), want one table", drift, err)
			}
			want := []string{"column type count", "nullability note", "missing column size", "missing column tags",
				"missing column when", "missing column order", "extra column legacy"}
			if got := kinds(drift[0]); !reflect.DeepEqual(got, want) {
				t.Errorf("differences %q, want %q\n%s", got, want, drift[0])
			}
			if s := drift[0].String(); !strings.Contains(s, "NOT NULL without a default: creating tasks fails") || !drift[0].Blocking() {
				t.Errorf("the extra NOT NULL column's danger is not named, or not blocking:\n%s", s)
			}
			sql, err := drift[0].Migration()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("generated migration:\n%s", sql)
			if !strings.Contains(sql, "-- ALTER TABLE evolving_tasks DROP COLUMN legacy;") {
				t.Errorf("the dropped field's DROP COLUMN is not offered as a comment:\n%s", sql)
			}
			st2.Close()

			// Apply it: only the dropped column remains, and the row loads.
			files[dialect+"/20990101000002_evolving_diff.sql"] = &fstest.MapFile{Data: []byte(sql)}
			st3, def3 := openWith(t, url, evolvingType[evolvingV2](files))
			drift, err = st3.Drift(ctx)
			if err != nil || len(drift) != 1 || !reflect.DeepEqual(kinds(drift[0]), []string{"extra column legacy"}) {
				t.Fatalf("after the migration: drift %v (%v), want only the extra column", drift, err)
			}
			rec, err := st3.GetTask(ctx, tk.ID, store.AdminScope)
			if err != nil {
				t.Fatalf("loading the old row: %v", err)
			}
			if got, want := rec.Fields, (&evolvingV2{Name: "old", Count: 7, Size: 3}); !reflect.DeepEqual(got, want) {
				t.Errorf("old row = %+v, want %+v", got, want)
			}
			tk2 := *tk
			tk2.ID = uuid.New()
			at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
			f := &evolvingV2{Name: "new", Count: 1.5, Note: "n", Size: 9, Tags: []string{"a"}, When: &at, Order: 2}
			if _, _, err := st3.CreateTask(ctx, &store.Record{Task: &tk2, Def: def3, Fields: f}); err != nil {
				t.Fatalf("creating a task with the new model: %v", err)
			}
			if rec, err := st3.GetTask(ctx, tk2.ID, store.AdminScope); err != nil || !reflect.DeepEqual(rec.Fields, f) {
				t.Errorf("new row = %+v (%v), want %+v", rec, err, f)
			}

			// What is left breaks nothing and needs no migration.
			if drift[0].Blocking() {
				t.Errorf("the leftover nullable column is blocking:\n%s", drift[0])
			}
			if sql, err := drift[0].Migration(); sql != "" || err != nil {
				t.Errorf("a migration for a leftover column (%v):\n%s", err, sql)
			}
		})
	}
}

// TestDriftMissingTable: a type whose migrations do not create its table
// gets a CREATE TABLE that, applied, leaves no drift.
func TestDriftMissingTable(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			url := testdb.URL(t, dialect)
			files := migrationFiles(dialect, "20990101000001_nothing.sql", "-- +goose Up\nSELECT 1;\n")
			st, _ := openWith(t, url, evolvingType[evolvingV2](files))
			drift, err := st.Drift(context.Background())
			if err != nil || len(drift) != 1 || drift[0].Differences[0].Kind != schema.DriftMissingTable {
				t.Fatalf("drift %v (%v), want a missing table", drift, err)
			}
			sql, err := drift[0].Migration()
			if err != nil || !strings.Contains(sql, "CREATE TABLE evolving_tasks") || !strings.Contains(sql, `"order"`) {
				t.Fatalf("migration (%v):\n%s", err, sql)
			}
			st.Close()
			files[dialect+"/20990101000002_evolving.sql"] = &fstest.MapFile{Data: []byte(sql)}
			st, _ = openWith(t, url, evolvingType[evolvingV2](files))
			if drift, err := st.Drift(context.Background()); err != nil || len(drift) != 0 {
				t.Errorf("after the migration: %v (%v)", drift, err)
			}
		})
	}
}

func TestCreateTableMigration(t *testing.T) {
	t.Parallel()
	cols := []schema.ColumnSpec{
		{Name: "prompt", Kind: registry.KindString},
		{Name: "steps", Kind: registry.KindInt, Default: "28"},
		{Name: "scale", Kind: registry.KindFloat, Default: "0.5"},
		{Name: "on", Kind: registry.KindBool, Default: "true"},
		{Name: "at", Kind: registry.KindTime, Nullable: true},
		{Name: "meta", Kind: registry.KindJSON, Nullable: true},
		{Name: "label", Kind: registry.KindString, Default: "it's"},
	}
	tests := []struct {
		dialect string
		want    []string
	}{
		{"sqlite", []string{"id     TEXT PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE", "prompt TEXT NOT NULL,",
			"steps  INTEGER NOT NULL DEFAULT 28", "scale  REAL NOT NULL DEFAULT 0.5", `"on"   INTEGER NOT NULL DEFAULT 1`,
			"at     TIMESTAMP,", "meta   TEXT,", "label  TEXT NOT NULL DEFAULT 'it''s'", "DROP TABLE evolving_tasks;"}},
		{"postgres", []string{"id     UUID PRIMARY KEY", "steps  BIGINT NOT NULL DEFAULT 28", "scale  DOUBLE PRECISION NOT NULL DEFAULT 0.5",
			`"on"   BOOLEAN NOT NULL DEFAULT TRUE`, "at     TIMESTAMPTZ,", "meta   JSONB,"}},
	}
	for _, tt := range tests {
		t.Run(tt.dialect, func(t *testing.T) {
			t.Parallel()
			sql, err := schema.CreateTableMigration(tt.dialect, "evolving_tasks", cols)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(sql, w) {
					t.Errorf("missing %q in\n%s", w, sql)
				}
			}
		})
	}
	if _, err := schema.CreateTableMigration("mysql", "x", cols); err == nil {
		t.Error("an unknown dialect was accepted")
	}
	bad := []schema.ColumnSpec{{Name: "n", Kind: registry.KindInt, Default: "five"}}
	if _, err := schema.CreateTableMigration("sqlite", "x", bad); err == nil || !strings.Contains(err.Error(), `default "five" is not an integer`) {
		t.Errorf("bad default: %v", err)
	}
}

// TestDriftAcceptsEquivalentTypes: narrower integer and float columns fit
// narrower Go fields, and SQLite's affinity rules are followed.
func TestDriftAcceptsEquivalentTypes(t *testing.T) {
	t.Parallel()
	type narrow struct {
		Small int16   `json:"small" db:"small"`
		Mid   int32   `json:"mid" db:"mid"`
		F     float32 `json:"f" db:"f"`
		S     string  `json:"s" db:"s"`
		B     bool    `json:"b" db:"b"`
	}
	migrations := map[string]string{
		"sqlite":   "CREATE TABLE evolving_tasks (id TEXT PRIMARY KEY, small SMALLINT NOT NULL, mid INT NOT NULL, f FLOAT NOT NULL, s VARCHAR(20) NOT NULL, b BOOLEAN NOT NULL)",
		"postgres": "CREATE TABLE evolving_tasks (id UUID PRIMARY KEY, small SMALLINT NOT NULL, mid INTEGER NOT NULL, f REAL NOT NULL, s VARCHAR(20) NOT NULL, b BOOLEAN NOT NULL)",
	}
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			files := migrationFiles(dialect, "20990101000001_x.sql", "-- +goose Up\n"+migrations[dialect]+";\n")
			st, _ := openWith(t, testdb.URL(t, dialect), evolvingType[narrow](files))
			if drift, err := st.Drift(context.Background()); err != nil || len(drift) != 0 {
				t.Errorf("drift %v (%v), want none", fmt.Sprint(drift), err)
			}
		})
	}
}
