package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/scaffold"
	"github.com/computeserver/compute/internal/store/schema"
	"github.com/computeserver/compute/internal/store/sqlstore"
)

const migrateDiffHelp = `Applies every migration to a scratch database of each dialect — a
temporary SQLite file, and a temporary schema on the PostgreSQL server named
by --postgres-url (default: DATABASE_URL when it is a postgres:// URL) — and
compares each task type's table with its model (the fields struct): missing
tables and columns, column types, NULL where the field cannot be nil or
NOT NULL where it can, columns no field maps to. PostgreSQL is skipped, with
a note, when no server is named.

It prints the differences and the migration that fixes them. With --write
it writes that migration into the type's migrations/<dialect>/ folder,
versioned after every existing migration. Columns the model no longer has
are never dropped: the migration carries their DROP COLUMN as a comment.

Exits non-zero when a difference is found and --write is not given.`

// withMigrateDiff adds `diff` to the migrate command.
func withMigrateDiff(migrate *cobra.Command, f *flags, stdout, stderr io.Writer) *cobra.Command {
	migrate.AddCommand(migrateDiffCmd(f, stdout, stderr))
	return migrate
}

// diffOptions parameterise runMigrateDiff.
type diffOptions struct {
	reg         *registry.Registry
	root        string // repository root, for --write
	write       bool
	postgresURL string // "" skips PostgreSQL
	now         time.Time
	log         *slog.Logger
}

func migrateDiffCmd(f *flags, stdout, stderr io.Writer) *cobra.Command {
	var o diffOptions
	var dir string
	cmd := &cobra.Command{
		Use:   "diff",
		Short: "Compare the task types' models with their migrated tables; write the missing migrations",
		Long:  migrateDiffHelp,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.config(cmd)
			if err != nil {
				return err
			}
			if o.postgresURL == "" && sqlstore.IsPostgresURL(cfg.DatabaseURL) {
				o.postgresURL = cfg.DatabaseURL
			}
			if o.root, err = repoRoot(dir); err != nil && o.write {
				return err
			}
			if o.reg, err = app.NewRegistry(app.NewFetcher(config.Default(), nil), nil); err != nil {
				return err
			}
			// The scratch databases' migrations are not news: warnings only.
			o.now, o.log = time.Now(), slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			return runMigrateDiff(cmd.Context(), o, stdout)
		},
	}
	cmd.Flags().BoolVar(&o.write, "write", false, "write the migrations into the types' folders")
	cmd.Flags().StringVar(&o.postgresURL, "postgres-url", "", "PostgreSQL server to compare on, in a temporary schema (default: DATABASE_URL if it is postgres://)")
	cmd.Flags().StringVar(&dir, "dir", "", "repository root for --write (default: the nearest folder with go.mod)")
	return cmd
}

// runMigrateDiff compares on each dialect and prints (or writes) the
// migrations.
func runMigrateDiff(ctx context.Context, o diffOptions, out io.Writer) error {
	dialects := []struct{ name, dsn string }{{sqlstore.DialectSQLite, ""}, {sqlstore.DialectPostgres, o.postgresURL}}
	var pending []schema.TableDrift
	highest := int64(0) // the highest version applied, the core's included
	for _, d := range dialects {
		if d.name == sqlstore.DialectPostgres && d.dsn == "" {
			fmt.Fprintln(out, "postgres: skipped; name a server with --postgres-url or DATABASE_URL")
			continue
		}
		drift, top, err := scratchDrift(ctx, d.dsn, o)
		if err != nil {
			return fmt.Errorf("%s: %w", d.name, err)
		}
		highest = max(highest, top)
		if len(drift) == 0 {
			fmt.Fprintf(out, "%s: every task type's table matches its model\n", d.name)
		}
		pending = append(pending, drift...)
	}
	if len(pending) == 0 {
		return nil
	}
	var written []string
	blocking := 0
	versions := map[string]int64{} // one version per type, shared by its dialects
	for _, d := range pending {
		fmt.Fprintf(out, "\n%s\n", d)
		if !d.Blocking() {
			fmt.Fprintln(out, "Nothing to migrate: leftover columns break nothing. Drop them in a migration once nothing reads them:")
			for _, x := range d.Differences {
				fmt.Fprintf(out, "    ALTER TABLE %s DROP COLUMN %s;\n", schema.Ident(d.Table), schema.Ident(x.Column))
			}
			continue
		}
		blocking++
		sql, err := d.Migration()
		if err != nil {
			return fmt.Errorf("%s, task type %q: %w", d.Dialect, d.Type, err)
		}
		if !o.write {
			fmt.Fprintf(out, "Migration to add (run with --write to write it):\n%s", indent(sql))
			continue
		}
		def, _ := o.reg.Lookup(d.Type)
		v, ok := versions[d.Type]
		if !ok {
			next, err := scaffold.NextVersion(o.root, o.now)
			if err != nil {
				return err
			}
			next = max(next, highest+1)
			for _, used := range versions {
				next = max(next, used+1)
			}
			v, versions[d.Type] = next, next
		}
		path, err := writeMigration(o.root, def, d.Dialect, v, sql)
		if err != nil {
			return fmt.Errorf("%s, task type %q: %w\nThe migration:\n%s", d.Dialect, d.Type, err, sql)
		}
		written = append(written, path)
	}
	switch {
	case blocking == 0:
		return nil
	case !o.write:
		return fmt.Errorf("%d table(s) need a migration; `compute migrate diff --write` writes them", blocking)
	}
	fmt.Fprintln(out, "\nWrote:")
	for _, p := range written {
		fmt.Fprintln(out, "  "+p)
	}
	fmt.Fprintln(out, "Review them (a dropped field's DROP COLUMN is left commented), then run the tests.")
	return nil
}

// scratchDrift migrates a scratch database and compares; it also returns
// the highest migration version, so a new one can follow it.
func scratchDrift(ctx context.Context, dsn string, o diffOptions) (drift []schema.TableDrift, highest int64, err error) {
	st, drop, err := schema.OpenScratch(ctx, dsn, o.reg, o.log)
	if err != nil {
		return nil, 0, err
	}
	defer func() {
		dropCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err = errors.Join(err, st.Close(), drop(dropCtx))
	}()
	if err := st.Migrate(ctx); err != nil {
		return nil, 0, err
	}
	states, err := st.MigrationStatus(ctx)
	if err != nil {
		return nil, 0, err
	}
	for _, m := range states {
		highest = max(highest, m.Version)
	}
	drift, err = schema.Drift(ctx, st, o.reg)
	return drift, highest, err
}

// writeMigration writes sql as the next migration of the type's folder:
// the folder of its fields struct's package, under root.
func writeMigration(root string, def *registry.Definition, dialect string, version int64, sql string) (string, error) {
	module, err := scaffold.ModulePath(root)
	if err != nil {
		return "", err
	}
	pkg := def.Model.PkgPath()
	rel, ok := strings.CutPrefix(pkg, module+"/")
	if !ok {
		return "", fmt.Errorf("its package %s is not in module %s under %s; add the migration by hand", pkg, module, root)
	}
	dir := filepath.Join(root, filepath.FromSlash(rel), "migrations", dialect)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, fmt.Sprintf("%d_%s_diff.sql", version, def.Name))
	if err := os.WriteFile(path, []byte(sql), 0o644); err != nil {
		return "", err
	}
	return filepath.Rel(root, path)
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}
