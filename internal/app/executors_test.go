package app_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

func TestNewExecutors(t *testing.T) {
	t.Parallel()
	set, err := app.NewExecutors(config.Config{})
	if err != nil || strings.Join(set.Names(), ",") != "local,mock" {
		t.Fatalf("without a file: %v, %v; want local,mock", set.Names(), err)
	}
	// A file with types: and no executors: routes over mock and local.
	set, err = app.NewExecutors(config.Config{File: "/etc/c.yaml", Types: map[string]config.TypeEntry{"generation": {Executor: "mock"}}})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := set.Resolve("generation", []string{"mock"}, "", ""); got != "mock" {
		t.Errorf("the route gives %q, want mock", got)
	}
	_, err = app.NewExecutors(config.Config{File: "/etc/c.yaml", Executors: map[string]config.ExecutorEntry{"gpu": {Type: "tpu", Line: 7}}})
	if err == nil || !strings.Contains(err.Error(), `config file /etc/c.yaml: executors.gpu (line 7): unknown executor type "tpu"`) {
		t.Errorf("an unknown type: %v", err)
	}
}

// A types: entry naming a task type that does not exist, or an executor
// the type cannot run on, stops the process at start.
func TestRoutesAreChecked(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		types map[string]config.TypeEntry
		want  string
	}{
		{"unknown type", map[string]config.TypeEntry{"genration": {Executor: "mock", Line: 3}}, "c.yaml:3: types.genration: no such task type"},
		{"executor of another type", map[string]config.TypeEntry{"generation": {Executor: "local", Line: 4}},
			`c.yaml:4: types.generation: executor "local" cannot run generation tasks (usable: mock)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := config.Default()
			cfg.DataDir, cfg.File, cfg.Types = t.TempDir(), "/etc/c.yaml", tt.types
			_, err := app.New(t.Context(), cfg, app.Options{Version: "test"}, testdb.Logger(t))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err %v, want %q", err, tt.want)
			}
		})
	}
}

// With the local models installed in the data directory (make models),
// their command executors are built in, beside the file's; an executor of
// the file with the same name wins.
func TestModelsExecutors(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	dir := filepath.Join(data, "models")
	if err := os.MkdirAll(filepath.Join(dir, "node_modules"), 0o755); err != nil {
		t.Fatal(err)
	}
	set, err := app.NewExecutors(config.Config{DataDir: data})
	if err != nil || strings.Join(set.Names(), ",") != "local,mock" {
		t.Fatalf("without the scripts: %v, %v; want local,mock", set.Names(), err)
	}
	for _, f := range []string{"bgremove.mjs", "tfmodels.mjs", "protocol.mjs"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	set, err = app.NewExecutors(config.Config{DataDir: data})
	if err != nil || strings.Join(set.Names(), ",") != "local,mock,models-bg,models-tf" {
		t.Fatalf("installed: %v, %v; want local,mock,models-bg,models-tf", set.Names(), err)
	}
	if k := set.Kind("models-bg"); k != "command" {
		t.Errorf("models-bg is of type %q, want command", k)
	}
	set, err = app.NewExecutors(config.Config{DataDir: data, File: "/etc/c.yaml",
		Executors: map[string]config.ExecutorEntry{"models-tf": {Type: "mock"}}})
	if err != nil || strings.Join(set.Names(), ",") != "models-bg,models-tf" || set.Kind("models-tf") != "mock" {
		t.Fatalf("with a file: %v (models-tf %q), %v; want models-bg and the file's models-tf", set.Names(), set.Kind("models-tf"), err)
	}
}
