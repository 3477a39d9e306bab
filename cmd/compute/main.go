// Command compute is the compute server: `compute serve` runs the API and
// the workers on SQLite (default) or PostgreSQL.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/computeserver/compute/internal/api"
	"github.com/computeserver/compute/internal/apikey"
	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/store/sqlstore"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.1.0-dev"

func main() {
	if err := newRoot(os.Stdout, os.Stderr).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "compute:", err)
		os.Exit(1)
	}
}

// flags are the configuration flags shared by the commands; they override
// the environment.
type flags struct {
	addr, dataDir, databaseURL string
	workers                    int
}

func (f *flags) register(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.addr, "addr", "", "listen address (env COMPUTE_ADDR, default 127.0.0.1:9000)")
	cmd.PersistentFlags().StringVar(&f.dataDir, "data-dir", "", "data directory for SQLite and artifacts (env COMPUTE_DATA_DIR, default ./data)")
	cmd.PersistentFlags().StringVar(&f.databaseURL, "database-url", "", "postgres:// URL; empty for SQLite (env DATABASE_URL)")
	cmd.PersistentFlags().IntVar(&f.workers, "workers", -1, "tasks run at once by this process (env COMPUTE_WORKERS, default 8)")
}

func (f *flags) config() (config.Config, error) {
	c, err := config.FromEnv()
	if err != nil {
		return c, err
	}
	if f.addr != "" {
		c.Addr = f.addr
	}
	if f.dataDir != "" {
		c.DataDir = f.dataDir
	}
	if f.databaseURL != "" {
		c.DatabaseURL = f.databaseURL
	}
	if f.workers >= 0 {
		c.Workers = f.workers
	}
	return c, c.Validate()
}

func newLogger(c config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	var f flags
	root := &cobra.Command{
		Use:           "compute",
		Short:         "A compute server for typed AI/GPU tasks",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	f.register(root)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(
		roleCmd(&f, stderr, "serve", "Run the API and the workers in one process", true, true),
		roleCmd(&f, stderr, "api", "Run the API only (tasks are run by worker processes)", false, true),
		roleCmd(&f, stderr, "worker", "Run workers only (no HTTP listener)", true, false),
		withMigrateDiff(migrateCmd(&f, stdout, stderr), &f, stdout, stderr), openapiCmd(stdout), apikeyCmd(&f, stdout, stderr),
		newTaskTypeCmd(stdout))
	return root
}

// roleCmd runs one role of the binary: serve (API + workers), api (API
// only) or worker (workers only, no HTTP listener).
func roleCmd(f *flags, stderr io.Writer, use, short string, workers, api bool) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.config()
			if err != nil {
				return err
			}
			if workers && cfg.Workers == 0 {
				return fmt.Errorf("the %s role runs workers, but COMPUTE_WORKERS is 0", use)
			}
			log := newLogger(cfg, stderr)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			a, err := app.New(ctx, cfg, app.Options{Workers: workers, NoAPI: !api, Version: version}, log)
			if err != nil {
				return err
			}
			defer a.Close()
			var ln net.Listener
			if api {
				if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
					return fmt.Errorf("listening on %s: %w", cfg.Addr, err)
				}
			}
			return a.Serve(ctx, ln)
		},
	}
}

// openStore opens the configured database without building the API.
func openStore(ctx context.Context, f *flags, stderr io.Writer) (*sqlstore.Store, config.Config, error) {
	cfg, err := f.config()
	if err != nil {
		return nil, cfg, err
	}
	log := newLogger(cfg, stderr)
	artifacts, err := artifact.NewLocal(cfg.ArtifactDir())
	if err != nil {
		return nil, cfg, err
	}
	reg, err := app.NewRegistry(app.NewFetcher(cfg, artifacts), nil)
	if err != nil {
		return nil, cfg, err
	}
	st, err := sqlstore.Open(ctx, cfg.DSN(), reg, log)
	return st, cfg, err
}

func migrateCmd(f *flags, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "migrate", Short: "Apply or inspect database migrations"}
	cmd.AddCommand(&cobra.Command{
		Use: "up", Short: "Apply every pending migration", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, _, err := openStore(cmd.Context(), f, stderr)
			if err != nil {
				return err
			}
			defer st.Close()
			if err := st.Migrate(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintln(stdout, "migrations applied")
			return nil
		},
	}, &cobra.Command{
		Use: "status", Short: "List migrations and whether each is applied", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, _, err := openStore(cmd.Context(), f, stderr)
			if err != nil {
				return err
			}
			defer st.Close()
			states, err := st.MigrationStatus(cmd.Context())
			if err != nil {
				return err
			}
			for _, m := range states {
				state := "pending"
				if m.Applied {
					state = "applied " + m.AppliedAt.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(stdout, "%d\t%-40s\t%s\n", m.Version, m.Source, state)
			}
			return nil
		},
	})
	return cmd
}

func openapiCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use: "openapi", Short: "Print the OpenAPI 3.1 document", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := config.Default()
			reg, err := app.NewRegistry(app.NewFetcher(cfg, nil), nil)
			if err != nil {
				return err
			}
			srv, err := api.New(api.Config{Version: version}, api.Deps{Registry: reg})
			if err != nil {
				return err
			}
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(srv.OpenAPI())
		},
	}
}

func apikeyCmd(f *flags, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "apikey", Short: "Manage API keys"}
	var tenant, name string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create an API key and print it (only the key, on stdout)",
		Long:  "Without --tenant the key is an admin key that sees every task; with --tenant it sees only that tenant's tasks.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, cfg, err := openStore(cmd.Context(), f, stderr)
			if err != nil {
				return err
			}
			defer st.Close()
			if cfg.AutoMigrate {
				if err := st.Migrate(cmd.Context()); err != nil {
					return err
				}
			}
			key := apikey.Generate()
			if err := st.CreateAPIKey(cmd.Context(), apikey.Record(key, name, tenant)); err != nil {
				return err
			}
			_, err = fmt.Fprintln(stdout, key)
			return err
		},
	}
	create.Flags().StringVar(&tenant, "tenant", "", "tenant the key belongs to (empty: an admin key)")
	create.Flags().StringVar(&name, "name", "", "a label for the key")
	cmd.AddCommand(create)
	return cmd
}
