package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/scaffold"
)

const newTaskTypeHelp = `Writes internal/tasks/<package>/ for a new task type — its fields and
update structs, a working processor (it echoes its inputs), a scheduler
stub, migrations for SQLite and PostgreSQL, and tests — and adds it to
internal/tasks/register.go. The package name is the name without
underscores (image_adjuster → imageadjuster). The type builds, migrates and
passes its tests and the conformance suite as written.

Each --field is name:type[:constraints]. Types: string, int, float, bool,
time, []string, json (an object). Constraints, comma-separated:
  min=N, max=N    value (int, float), length (string) or item count ([]string)
  default=V       the value when absent (string, int, float, bool)
  enum=a|b|c      allowed values (string)
  optional        may be absent: a pointer, NULL in the table
  output          written by the processor, read-only on the API
Without --field the type has one field, input:string:min=1,max=10000.

See docs/adding-a-task-type.md.`

func newTaskTypeCmd(stdout io.Writer) *cobra.Command {
	var dir string
	var specs []string
	cmd := &cobra.Command{
		Use:   "new-task-type <name> [--field name:type[:constraints]]…",
		Short: "Write a new task type's folder and register it",
		Long:  newTaskTypeHelp,
		Example: `  compute new-task-type word_count --field text:string:min=1,max=100000 --field words:int:output
  compute new-task-type upscale --field image_url:string:min=1,max=2048 --field factor:int:min=2,max=4,default=2`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			root, err := repoRoot(dir)
			if err != nil {
				return err
			}
			var fields []scaffold.Field
			for _, s := range specs {
				f, err := scaffold.ParseField(s)
				if err != nil {
					return err
				}
				fields = append(fields, f)
			}
			reg, err := app.NewRegistry(app.NewFetcher(config.Default(), nil), nil)
			if err != nil {
				return err
			}
			res, err := scaffold.Generate(scaffold.Options{Root: root, Name: args[0], Fields: fields, Registered: reg.Names()})
			if err != nil {
				return err
			}
			if len(fields) == 0 {
				fmt.Fprintf(stdout, "No --field given: the type has one field, %s:%s.\n", scaffold.DefaultField.Name, scaffold.DefaultField.Type)
			}
			fmt.Fprintf(stdout, "Wrote task type %q (package %s):\n", args[0], res.Package)
			for _, f := range res.Files {
				fmt.Fprintln(stdout, "  "+f)
			}
			fmt.Fprintf(stdout, `
Next:
  1. go test ./%[1]s/ ./internal/conformance/      (they pass as written)
  2. Write the processor in %[1]s/processor.go, describe the fields
     (doc tags) in %[1]s/%[2]s.go, and make its Examples show real inputs.
  3. Changed the fields later? compute migrate diff --write
See docs/adding-a-task-type.md.
`, res.Dir, res.Package)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "repository root (default: the nearest folder with go.mod, from the working directory up)")
	cmd.Flags().StringArrayVar(&specs, "field", nil, "a field, name:type[:constraints] (repeatable)")
	return cmd
}

// repoRoot returns dir (which must hold go.mod) or, when dir is empty,
// the nearest folder with go.mod from the working directory up.
func repoRoot(dir string) (string, error) {
	if dir == "" {
		return scaffold.FindRoot(".")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(abs, "go.mod")); err != nil {
		return "", fmt.Errorf("--dir %s: no go.mod there; pass the repository root", strings.TrimSpace(dir))
	}
	return abs, nil
}
