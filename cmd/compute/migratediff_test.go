package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// TestMigrateDiffBuiltins: the built-in types' migrations match their
// models on both databases.
func TestMigrateDiffBuiltins(t *testing.T) {
	t.Parallel()
	out, err := runCLI(t, "migrate", "diff", "--postgres-url", testdb.URL(t, "postgres"))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"sqlite: every task type's table matches its model", "postgres: every task type's table matches its model"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// driftyFields is a model whose first migration lacks the size column.
type driftyFields struct {
	Label string `json:"label" db:"label"`
	Size  int    `json:"size" db:"size" default:"2"`
}

func driftyType(files fstest.MapFS) registry.Type[driftyFields, struct{}] {
	return registry.Type[driftyFields, struct{}]{
		Name: "drifty",
		Processor: registry.ProcessorFunc[driftyFields](func(context.Context, *registry.Job[driftyFields]) (*task.Result, error) {
			return &task.Result{}, nil
		}),
		Migrations: files,
	}
}

// TestMigrateDiffWrites: a drifting type is reported (an error without
// --write); --write puts the migration in the type's folder (this
// package's, under the root), versioned after every applied migration
// though the root has none, and with it the type no longer drifts.
func TestMigrateDiffWrites(t *testing.T) {
	t.Parallel()
	files := fstest.MapFS{
		"sqlite/20990101000001_drifty.sql":   {Data: []byte("-- +goose Up\nCREATE TABLE drifty_tasks (id TEXT PRIMARY KEY REFERENCES tasks (id), label TEXT NOT NULL);\n")},
		"postgres/20990101000001_drifty.sql": {Data: []byte("-- +goose Up\nCREATE TABLE drifty_tasks (id UUID PRIMARY KEY REFERENCES tasks (id), label TEXT NOT NULL);\n")},
	}
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte("module github.com/computeserver/compute\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := diffOptions{root: root, postgresURL: testdb.URL(t, "postgres"), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		log: slog.New(slog.DiscardHandler)}
	o.reg = registry.New()
	o.reg.MustRegister(driftyType(files))

	var out bytes.Buffer
	err := runMigrateDiff(t.Context(), o, &out)
	if err == nil || !strings.Contains(err.Error(), "2 table(s) need a migration; `compute migrate diff --write` writes them") {
		t.Fatalf("without --write: %v", err)
	}
	if s := out.String(); !strings.Contains(s, "missing column size") || !strings.Contains(s, "ADD COLUMN size INTEGER NOT NULL DEFAULT 2;") {
		t.Errorf("output:\n%s", s)
	}

	out.Reset()
	o.write = true
	if err := runMigrateDiff(t.Context(), o, &out); err != nil {
		t.Fatalf("--write: %v\n%s", err, out.String())
	}
	for _, dialect := range []string{"sqlite", "postgres"} {
		rel := "cmd/compute/migrations/" + dialect + "/20990101000002_drifty_diff.sql"
		if !strings.Contains(out.String(), rel) {
			t.Errorf("output does not name %s:\n%s", rel, out.String())
		}
		sql, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		files[dialect+"/20990101000002_drifty_diff.sql"] = &fstest.MapFile{Data: sql}
	}

	out.Reset()
	o.write = false
	o.reg = registry.New()
	o.reg.MustRegister(driftyType(files))
	if err := runMigrateDiff(t.Context(), o, &out); err != nil {
		t.Fatalf("with the written migrations: %v\n%s", err, out.String())
	}
	if strings.Count(out.String(), "every task type's table matches its model") != 2 {
		t.Errorf("output:\n%s", out.String())
	}
}
