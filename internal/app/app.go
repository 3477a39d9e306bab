// Package app wires one compute process together: configuration, store,
// registry, artifact store, execution engine and HTTP API. cmd/compute and
// the examples use it; so do the end-to-end tests.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/api"
	"github.com/computeserver/compute/internal/apikey"
	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/dashboard"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/cog"
	"github.com/computeserver/compute/internal/executors"
	"github.com/computeserver/compute/internal/monitor"
	"github.com/computeserver/compute/internal/netguard"
	"github.com/computeserver/compute/internal/queue"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/store/sqlstore"
	"github.com/computeserver/compute/internal/stream"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks"
	"github.com/computeserver/compute/internal/webhook"
	"github.com/computeserver/compute/internal/workflow"
)

// RegisterFunc adds task types to a registry.
type RegisterFunc func(reg *registry.Registry, deps tasks.Deps) error

// App is one wired compute process.
type App struct {
	Config    config.Config
	Registry  *registry.Registry
	Store     store.Store
	Artifacts artifact.Store
	// Executors are the configured executors tasks run on.
	Executors *executor.Set
	// Callbacks receives Cog containers' webhooks and hands them, through
	// the inboxes in the store, to the runs waiting in any process; the
	// API serves it.
	Callbacks *cog.Callbacks
	Engine    *queue.Engine
	Webhooks  *webhook.Deliverer
	Events    *Events
	API       *api.Server
	// Metrics are the process's Prometheus metrics, served at /metrics.
	Metrics *monitor.Metrics
	log     *slog.Logger
	// heartbeat registers the process for GET /monitoring/workers.
	heartbeat *monitor.Heartbeat
	// identity is the engine's instance identity, held while the app is
	// open.
	identity *queue.Identity
	// retention prunes the event log (COMPUTE_EVENT_RETENTION) in
	// processes that run workers; nil otherwise.
	retention *stream.Retention
	// artifactRetention removes the artifacts of old finished tasks
	// (COMPUTE_ARTIFACT_RETENTION) in processes that run workers; nil
	// otherwise.
	artifactRetention *artifact.Retention
}

// Options select what New builds.
type Options struct {
	// Register adds the task types (default tasks.Register).
	Register RegisterFunc
	// Workers runs the execution engine in this process.
	Workers bool
	// NoAPI leaves the HTTP API out (the worker role).
	NoAPI bool
	// Version is reported by the API.
	Version string
}

// NewFetcher returns the fetcher task types open their input URLs with:
// this server's artifacts directly, anything else over HTTP through the
// outbound address policy.
func NewFetcher(cfg config.Config, artifacts artifact.Store) *artifact.Fetcher {
	return &artifact.Fetcher{
		Store:         artifacts,
		Client:        netguard.NewHTTPClient(netguard.Policy{AllowPrivate: cfg.AllowPrivateURLs, AllowCIDRs: cfg.AllowPrivateCIDRs}, 60*time.Second),
		PublicBaseURL: cfg.BaseURL(), PublicArtifactsURL: cfg.ArtifactsPublicURL,
	}
}

// NewRegistry builds the registry of the task types register adds, on the
// default executors (mock and local).
func NewRegistry(fetcher *artifact.Fetcher, register RegisterFunc) (*registry.Registry, error) {
	return NewRegistryOn(fetcher, nil, register)
}

// NewRegistryOn builds the registry of the task types register adds, whose
// tasks run on the executors of set (nil: mock and local).
func NewRegistryOn(fetcher *artifact.Fetcher, set *executor.Set, register RegisterFunc) (*registry.Registry, error) {
	if register == nil {
		register = tasks.Register
	}
	reg := registry.New()
	if err := register(reg, tasks.Deps{Fetcher: fetcher, Executors: set}); err != nil {
		return nil, err
	}
	return reg, nil
}

// NewExecutors builds the executors of cfg's config file, or mock and local
// without one (or without its executors section), and the file's routes.
// When the local models are installed in the data directory (make models),
// their executors (executors.Models) are added.
// Errors name the file and the entry.
func NewExecutors(cfg config.Config) (*executor.Set, error) {
	return newExecutors(cfg, executors.Deps{Callbacks: cog.NewCallbacks(), PublicURL: cfg.BaseURL(), DataDir: cfg.DataDir})
}

// newExecutors is NewExecutors handing deps to the executors.
func newExecutors(cfg config.Config, deps executors.Deps) (*executor.Set, error) {
	var models map[string]executors.Entry
	if cfg.DataDir != "" {
		models = executors.Models(executors.ModelsDir(cfg.DataDir))
	}
	if cfg.Executors == nil && cfg.Types == nil && len(models) == 0 {
		return executors.Default(), nil
	}
	entries := map[string]executors.Entry{"mock": {Type: "mock"}, "local": {Type: "local"}}
	if cfg.Executors != nil {
		entries = make(map[string]executors.Entry, len(cfg.Executors))
		for name, e := range cfg.Executors {
			entries[name] = executors.Entry{Type: e.Type, Settings: e.Settings, Dir: e.Dir, Where: fmt.Sprintf("line %d", e.Line)}
		}
	}
	// The local models `make models` installed run on built-in executors
	// (docs/local-models.md), unless the file configures one of that name.
	for name, e := range models {
		if _, ok := entries[name]; !ok {
			entries[name] = e
		}
	}
	routes := make(map[string]executor.Route, len(cfg.Types))
	for name, t := range cfg.Types {
		routes[name] = executor.Route{Executor: t.Executor, Fallback: t.Fallback}
	}
	set, err := executors.BuildWith(entries, routes, deps)
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", cfg.File, err)
	}
	return set, nil
}

// checkRoutes refuses a `types:` entry of the config file that names a
// type this build does not have, or an executor the type cannot run on.
func checkRoutes(cfg config.Config, reg *registry.Registry, set *executor.Set) error {
	for name, t := range cfg.Types {
		def, ok := reg.Lookup(name)
		if !ok {
			return fmt.Errorf("config file %s:%d: types.%s: no such task type (known: %s)", cfg.File, t.Line, name, strings.Join(reg.Names(), ", "))
		}
		usable := set.Usable(def.Providers)
		for _, ex := range append([]string{t.Executor}, t.Fallback...) {
			if !slices.Contains(usable, ex) {
				return fmt.Errorf("config file %s:%d: types.%s: executor %q cannot run %s tasks (usable: %s)", cfg.File, t.Line, name, ex, name, strings.Join(usable, ", "))
			}
		}
	}
	return nil
}

// New opens the store (migrating it if configured), makes sure an API key
// exists, and builds the engine and the API.
func New(ctx context.Context, cfg config.Config, opts Options, log *slog.Logger) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	artifacts, err := NewArtifacts(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := checkArtifacts(ctx, artifacts); err != nil {
		return nil, err
	}
	fetcher := NewFetcher(cfg, artifacts)
	// The executors are built before the store opens (the registry of
	// types, which the store needs, takes them); their shared slots and
	// the Cog callbacks' inboxes reach the store once it is open.
	slots, inbox := &storeSlots{}, &storeInbox{}
	callbacks := cog.NewSharedCallbacks(inbox)
	set, err := newExecutors(cfg, executors.Deps{Callbacks: callbacks, PublicURL: cfg.BaseURL(), Slots: slots, DataDir: cfg.DataDir, Logger: log})
	if err != nil {
		return nil, err
	}
	reg, err := NewRegistryOn(fetcher, set, opts.Register)
	if err != nil {
		return nil, err
	}
	if err := checkRoutes(cfg, reg, set); err != nil {
		return nil, err
	}
	events, err := newEvents(cfg, log)
	if err != nil {
		return nil, err
	}
	// Every process runs the workflow policy: the one whose transaction
	// completes a step's last dependency creates the step's task.
	policy := &workflow.Policy{Builder: &workflow.Builder{Registry: reg}}
	if set != nil {
		policy.Builder.Executors = set
	}
	st, err := sqlstore.Open(ctx, cfg.DSN(), reg, log, sqlstore.WithWebhookTargets(webhook.Targeting{DefaultURL: cfg.WebhookURL}.Targets),
		sqlstore.WithEventSink(events.Announcer.Announce), sqlstore.WithListConns(cfg.DBListConns), sqlstore.WithWorkflowHook(policy))
	if err != nil {
		events.close()
		return nil, err
	}
	slots.set(st)
	inbox.set(st)
	// Start rates and 429 pauses are kept where every process sees them.
	set.UseGate(st)
	if !opts.NoAPI {
		events.addRelay(cfg, st, log)
	}
	fetcher.Owner = func(ctx context.Context, key string) (string, error) {
		raw, _ := artifact.TaskIDOf(key)
		id, err := uuid.Parse(raw)
		if err != nil {
			return "", artifact.ErrNotFound
		}
		rec, err := st.GetTask(ctx, id, store.AdminScope)
		if errors.Is(err, task.ErrNotFound) {
			return "", artifact.ErrNotFound
		}
		if err != nil {
			return "", err
		}
		return rec.Task.OriginTenantID, nil
	}
	a := &App{Config: cfg, Registry: reg, Store: st, Artifacts: artifacts, Executors: set, Callbacks: callbacks, Events: events, log: log}
	if opts.Workers && cfg.EventRetention > 0 {
		if a.retention, err = stream.NewRetention(stream.RetentionConfig{Keep: cfg.EventRetention}, st, log); err != nil {
			a.Close()
			return nil, err
		}
	}
	if opts.Workers && cfg.ArtifactRetention > 0 {
		if a.artifactRetention, err = artifact.NewRetention(artifact.RetentionConfig{Keep: cfg.ArtifactRetention}, st, artifacts, log); err != nil {
			a.Close()
			return nil, err
		}
	}
	if err := a.build(ctx, opts); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// build finishes New once the store is open: migrations, keys, queue
// limits, the engine, the webhook deliverer and the API.
func (a *App) build(ctx context.Context, opts Options) error {
	cfg, st := a.Config, a.Store
	if cfg.AutoMigrate {
		if err := st.Migrate(ctx); err != nil {
			return err
		}
	}
	if err := a.bootstrapKeys(ctx, !opts.NoAPI); err != nil {
		return err
	}
	for q, n := range cfg.QueueLimits {
		if err := st.SetQueueLimit(ctx, q, n); err != nil {
			return err
		}
	}
	var (
		eng api.Engine
		err error
	)
	mon, _ := st.(store.Monitor) // the SQL store's; nil leaves the numbers out
	a.Metrics = monitor.NewMetrics(monitor.Sources{
		Store: mon, DBs: pools(st), Logger: a.log,
		OpenStreams: func() int {
			if a.API == nil {
				return 0
			}
			return a.API.OpenStreams()
		},
	})
	instance := processName()
	if opts.Workers && cfg.Workers > 0 {
		if a.identity, err = queue.AcquireIdentity(cfg.InstanceDir()); err != nil {
			return err
		}
		instance = a.identity.Name
		maxResumes := cfg.MaxResumes
		if maxResumes == 0 {
			maxResumes = -1 // never; queue.Config's zero means its default
		}
		a.Engine = queue.New(queue.Config{
			Instance: a.identity.Name, Concurrency: cfg.Workers, ShutdownGrace: cfg.ShutdownGrace,
			PublicBaseURL: cfg.AnnouncedBaseURL(!opts.NoAPI), ArtifactsPublicURL: cfg.ArtifactsPublicURL, Lease: cfg.Lease, MaxResumes: maxResumes,
			ExecutorLimits: a.Executors.Concurrency(), Observer: a.Metrics,
		}, st, a.Registry, a.Artifacts, a.log)
		eng = a.Engine
		if a.Webhooks, err = newDeliverer(cfg, opts.Version, st, a.Metrics.WebhookResult, a.log); err != nil {
			return err
		}
	}
	if !opts.NoAPI {
		dash, err := dashboard.New()
		if err != nil {
			return err
		}
		a.API, err = api.New(api.Config{
			MaxBodyBytes: cfg.MaxBodyBytes, Version: opts.Version,
			MaxStreamsPerKey: cfg.SSEMaxStreamsPerKey, MaxReplaysPerKey: cfg.SSEMaxReplaysPerKey,
			MaxReplays: cfg.SSEMaxReplays, MaxPageBytes: cfg.MaxPageBytes,
		}, api.Deps{
			Store: st, Registry: a.Registry, Artifacts: a.Artifacts, Engine: eng, Logger: a.log, Events: a.Events.Relay,
			Executors: a.Executors, Callbacks: map[string]http.Handler{cog.Kind: a.Callbacks},
			Metrics: a.Metrics.Handler(), Dashboard: dash, DashboardPatterns: dashboard.Patterns(),
		})
		if err != nil {
			return err
		}
	}
	if mon != nil {
		a.heartbeat = monitor.NewHeartbeat(mon, store.Process{Instance: instance, Role: role(opts, cfg), Version: opts.Version}, 0, a.log)
	}
	return nil
}

// bootstrapKeys stores COMPUTE_API_KEY (hashed) as an admin key. A revoked
// COMPUTE_API_KEY stays revoked: it is reported, not stored again. Then, in
// a process that serves the API (generate), when no active key exists at
// all (a first start, or every key revoked), it generates an admin key and
// logs it once; a worker never does, as it has no port a client could use
// the key on.
func (a *App) bootstrapKeys(ctx context.Context, generate bool) error {
	if err := a.storeConfiguredKey(ctx); err != nil {
		return err
	}
	if !generate {
		return nil
	}
	n, err := a.Store.CountAPIKeys(ctx)
	if err != nil || n > 0 {
		return err
	}
	key := apikey.Generate()
	if err := a.Store.CreateAPIKey(ctx, apikey.Record(key, "generated at start: no active key", "")); err != nil {
		return err
	}
	a.log.Warn("no active API key existed, so an admin key was generated; it is stored hashed and will not be shown again "+
		"(lost it? compute apikey create makes another)", "api_key", key)
	return nil
}

// storeConfiguredKey stores COMPUTE_API_KEY, when set and not yet stored.
func (a *App) storeConfiguredKey(ctx context.Context) error {
	if a.Config.APIKey == "" {
		return nil
	}
	hash := apikey.Hash(a.Config.APIKey)
	_, err := a.Store.LookupAPIKey(ctx, hash)
	if errors.Is(err, store.ErrKeyRevoked) {
		a.log.Warn("COMPUTE_API_KEY names a revoked key, which stays revoked; unset it or set it to an active key " +
			"(compute apikey create makes one)")
		return nil
	}
	if errors.Is(err, store.ErrKeyNotFound) {
		err = a.Store.CreateAPIKey(ctx, apikey.Record(a.Config.APIKey, "COMPUTE_API_KEY", ""))
		if err != nil {
			// Another process starting at the same time may have
			// stored it first.
			if _, lerr := a.Store.LookupAPIKey(ctx, hash); lerr == nil {
				err = nil
			}
		}
	}
	if err != nil {
		return fmt.Errorf("storing COMPUTE_API_KEY: %w", err)
	}
	return nil
}

// Serve runs the engine and the HTTP server on ln until ctx is cancelled,
// then shuts down gracefully: stop accepting requests, let running tasks
// finish within the grace period, close the store. Without an API (the
// worker role) ln may be nil.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	if err := a.Events.start(ctx); err != nil {
		return err
	}
	defer a.Events.stop() // after the engine's last events
	if a.Engine != nil {
		if err := a.Engine.Start(ctx); err != nil {
			return err
		}
	}
	if a.Webhooks != nil {
		if err := a.Webhooks.Start(ctx); err != nil {
			return err
		}
		defer a.Webhooks.Stop() // after the engine's last events
	}
	if a.heartbeat != nil {
		if err := a.heartbeat.Start(ctx); err != nil {
			return err
		}
		defer a.heartbeat.Stop()
	}
	stopMetrics, err := a.serveMetrics()
	if err != nil {
		return err
	}
	defer stopMetrics()
	if a.retention != nil {
		if err := a.retention.Start(ctx); err != nil {
			return err
		}
		defer a.retention.Stop()
	}
	if a.artifactRetention != nil {
		if err := a.artifactRetention.Start(ctx); err != nil {
			return err
		}
		defer a.artifactRetention.Stop()
	}
	if a.API == nil {
		a.log.Info("working", "database", a.Store.Dialect(), "instance", a.Engine.Instance())
		<-ctx.Done()
		a.stopEngine()
		return nil
	}
	srv := &http.Server{
		// WriteTimeout would end the event streams too: each response
		// gets a deadline of its own instead (writeTimeout).
		Handler:           writeTimeout(a.API.Handler(), a.Config.HTTPWriteTimeout),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	if a.Events.Relay != nil {
		srv.RegisterOnShutdown(a.Events.Relay.Stop) // ends the streams, which never go idle
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	a.log.Info("serving", "addr", ln.Addr().String(), "database", a.Store.Dialect(), "workers", a.Engine != nil)
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	const requestGrace = 10 * time.Second
	start := time.Now()
	a.log.Info("shutting down: refusing new requests, waiting for those in flight", "timeout", requestGrace)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), requestGrace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		a.log.Warn("http shutdown", "error", err)
	}
	a.log.Info("requests done", "waited", time.Since(start).Round(time.Millisecond))
	a.stopEngine()
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	}
	return serveErr
}

// stopEngine stops claiming and waits for the running tasks (up to the
// shutdown grace, after which the engine releases them), saying so.
func (a *App) stopEngine() {
	if a.Engine == nil {
		return
	}
	start := time.Now()
	a.log.Info("stopping the workers: no new tasks; running ones may finish", "grace", a.Config.ShutdownGrace)
	a.Engine.Stop()
	a.log.Info("workers stopped", "waited", time.Since(start).Round(time.Millisecond))
}

// Close releases the store, the event bus and the instance identity.
func (a *App) Close() error {
	// The executors' processes (a command executor's server) end first:
	// the runs that used them are over.
	a.Executors.Close()
	return errors.Join(a.Store.Close(), a.Events.close(), a.identity.Close())
}
