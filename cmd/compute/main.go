// Command compute is the compute server: `compute serve` runs the API and
// the workers on SQLite (default) or PostgreSQL.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/computeserver/compute/internal/api"
	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/store/sqlstore"
	"github.com/computeserver/compute/internal/telemetry"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.1.0-dev"

func main() {
	if err := newRoot(os.Stdout, os.Stderr).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "compute:", termText(err.Error())) // it may quote the server
		// The client commands' errors carry their exit status
		// (cliconfig.go); every other error is 1.
		code := 1
		if ee := (*exitError)(nil); errors.As(err, &ee) {
			code = ee.code
		}
		os.Exit(code)
	}
}

// flags are the configuration flags; they override the environment. The
// database flags apply to the commands that open the database (the roles,
// migrate, apikey); --addr only to the roles that listen and --workers only
// to the roles that run tasks.
type flags struct {
	addr, dataDir, databaseURL string
	workers                    int
	// configFile is --config, the YAML config file (COMPUTE_CONFIG).
	configFile string
}

// flagOf maps the variables a flag can override to that flag.
var flagOf = map[string]string{
	"COMPUTE_ADDR": "addr", "COMPUTE_DATA_DIR": "data-dir", "DATABASE_URL": "database-url", "COMPUTE_WORKERS": "workers",
}

// setting names the setting env as the user gave it on cmd's command line:
// its flag ("--workers") when that was set, else the variable.
func setting(cmd *cobra.Command, env string) string {
	if name, ok := flagOf[env]; ok {
		if fl := cmd.Flags().Lookup(name); fl != nil && fl.Changed {
			return "--" + name
		}
	}
	return env
}

// registerStore adds the flags of a command that opens the database (to
// its subcommands too).
func (f *flags) registerStore(cmd *cobra.Command) {
	d := config.Default()
	cmd.PersistentFlags().StringVar(&f.dataDir, "data-dir", d.DataDir, "data directory for SQLite and artifacts (env COMPUTE_DATA_DIR)")
	cmd.PersistentFlags().StringVar(&f.databaseURL, "database-url", "", "postgres:// URL; empty for SQLite in the data directory (env DATABASE_URL)")
}

// registerRole adds the flags of a server role.
func (f *flags) registerRole(cmd *cobra.Command, listens, works bool) {
	d := config.Default()
	if listens {
		cmd.Flags().StringVar(&f.addr, "addr", d.Addr, "listen address (env COMPUTE_ADDR)")
	}
	if works {
		cmd.Flags().IntVar(&f.workers, "workers", d.Workers, "tasks run at once by this process (env COMPUTE_WORKERS)")
	}
}

// config reads the config file (--config, else COMPUTE_CONFIG), then the
// environment, then applies the flags set on cmd's command line.
func (f *flags) config(cmd *cobra.Command) (config.Config, error) {
	path := os.Getenv("COMPUTE_CONFIG")
	if fl := cmd.Flag("config"); fl != nil && fl.Changed {
		path = f.configFile
	}
	c, err := config.Load(path)
	if err != nil {
		return c, err
	}
	set := func(name string) bool {
		fl := cmd.Flags().Lookup(name)
		return fl != nil && fl.Changed
	}
	if set("addr") {
		c.Addr = f.addr
	}
	if set("data-dir") {
		c.DataDir = f.dataDir
	}
	if set("database-url") {
		c.DatabaseURL = f.databaseURL
	}
	if set("workers") {
		c.Workers = f.workers
	}
	err = c.Validate()
	if se := (*config.SettingError)(nil); errors.As(err, &se) {
		se.Setting = setting(cmd, se.Setting)
	}
	return c, err
}

func newLogger(c config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if c.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(h).With("service", serviceName())
}

// serviceName names the service in every log line: OTEL_SERVICE_NAME, the
// standard variable, or "compute".
func serviceName() string {
	if s := os.Getenv("OTEL_SERVICE_NAME"); s != "" {
		return s
	}
	return "compute"
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
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&f.configFile, "config", "", "YAML config file: settings, executors and types (env COMPUTE_CONFIG)")
	// The commands that open the database take its flags; openapi and
	// new-task-type open none.
	opening := []*cobra.Command{
		roleCmd(&f, stderr, "serve", "Run the API and the workers in one process", true, true),
		roleCmd(&f, stderr, "api", "Run the API only (tasks are run by worker processes)", false, true),
		roleCmd(&f, stderr, "worker", "Run workers only (no HTTP listener)", true, false),
		withMigrateDiff(migrateCmd(&f, stdout, stderr), &f, stdout, stderr), apikeyCmd(&f, stdout, stderr),
	}
	for _, c := range opening {
		f.registerStore(c)
	}
	root.AddCommand(opening...)
	root.AddCommand(openapiCmd(stdout), newTaskTypeCmd(stdout), healthcheckCmd(&f, stdout), artifactsCmd(&f, stdout))
	// The client commands talk to a running server through package client.
	root.AddCommand(taskCmd(stdout, stderr), workflowCmd(stdout, stderr))
	return root
}

// roleCmd runs one role of the binary: serve (API + workers), api (API
// only) or worker (workers only, no HTTP listener). A role that listens
// binds its address before it touches the database, so a port in use
// fails the start before anything (such as a first API key) is made.
func roleCmd(f *flags, stderr io.Writer, use, short string, workers, api bool) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.config(cmd)
			if err != nil {
				return err
			}
			if workers && cfg.Workers == 0 {
				return fmt.Errorf("the %s role runs workers, but %s is 0", use, setting(cmd, "COMPUTE_WORKERS"))
			}
			log := newLogger(cfg, stderr)
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			shutdownTraces, err := telemetry.Setup(ctx, serviceName())
			if err != nil {
				return err
			}
			defer func() {
				// Flush the queued spans, bounded: the collector may be gone.
				sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				defer cancel()
				if err := shutdownTraces(sctx); err != nil {
					log.Warn("flushing traces", "error", err)
				}
			}()
			var ln net.Listener
			if api {
				if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
					return fmt.Errorf("listening on %s (%s): %w", cfg.Addr, setting(cmd, "COMPUTE_ADDR"), err)
				}
				cfg.Addr = boundAddr(cfg.Addr, ln.Addr())
			}
			a, err := app.New(ctx, cfg, app.Options{Workers: workers, NoAPI: !api, Version: version}, log)
			if err != nil {
				if ln != nil {
					ln.Close()
				}
				return err
			}
			defer a.Close()
			return a.Serve(ctx, ln)
		},
	}
	f.registerRole(cmd, api, workers)
	return cmd
}

// boundAddr is the address a listener on written announces: written
// itself, its host kept as the user wrote it (localhost stays localhost),
// with the port the listener got when written asked for port 0.
func boundAddr(written string, bound net.Addr) string {
	host, port, err := net.SplitHostPort(written)
	if err != nil || port != "0" {
		return written
	}
	_, got, err := net.SplitHostPort(bound.String())
	if err != nil {
		return written
	}
	return net.JoinHostPort(host, got)
}

// openStore opens the configured database without building the API. Only
// create (migrate up) may create a SQLite database that does not exist: the
// other commands would otherwise act on a new, empty database the running
// server never reads, and print keys it rejects.
func openStore(cmd *cobra.Command, f *flags, stderr io.Writer, create bool) (*sqlstore.Store, config.Config, error) {
	ctx := cmd.Context()
	cfg, err := f.config(cmd)
	if err != nil {
		return nil, cfg, err
	}
	if !create && cfg.DatabaseURL == "" {
		if err := sqliteExists(cfg.DSN()); err != nil {
			return nil, cfg, err
		}
	}
	log := newLogger(cfg, stderr)
	artifacts, err := app.NewArtifacts(ctx, cfg)
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

// sqliteExists refuses a SQLite database file that does not exist, naming
// the path and the settings that choose it.
func sqliteExists(path string) error {
	_, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no SQLite database at %s: point COMPUTE_DATA_DIR (or --data-dir) at the server's data directory, "+
			"or set DATABASE_URL (or --database-url) to its PostgreSQL database; `compute migrate up` creates a new one", path)
	}
	if err != nil {
		return fmt.Errorf("checking the SQLite database: %w", err)
	}
	return nil
}

func migrateCmd(f *flags, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "migrate", Short: "Apply or inspect database migrations"}
	cmd.AddCommand(&cobra.Command{
		Use: "up", Short: "Apply every pending migration", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, _, err := openStore(cmd, f, stderr, true)
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
			st, _, err := openStore(cmd, f, stderr, false)
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
