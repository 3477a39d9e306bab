// Package api is the HTTP edge of the compute server: the task routes (one
// generic set serving every registered type), authentication, problem
// details (RFC 9457) and the OpenAPI 3.1 document, built with huma.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/stream"
	"github.com/computeserver/compute/internal/telemetry"
	"github.com/computeserver/compute/internal/workflow"
)

// Config configures the HTTP API.
type Config struct {
	// MaxBodyBytes limits request bodies (default 1 MiB); larger bodies
	// get 413.
	MaxBodyBytes int64
	// Version is reported in the OpenAPI document.
	Version string
	// KeyCacheTTL is how long a verified API key is trusted without
	// asking the database again (default 30s; revocation takes that long).
	KeyCacheTTL time.Duration
	// MaxStreamsPerKey bounds the event streams one API key holds open at
	// once (default 16); one more is answered 429.
	MaxStreamsPerKey int
	// MaxReplaysPerKey bounds the firehose streams of one API key that
	// replay the log from the database at once (default 4); one more is
	// answered 429.
	MaxReplaysPerKey int
	// MaxReplays bounds the firehose streams of every key together that
	// replay the log at once on this process (default GOMAXPROCS); one more is
	// answered 429. Replays are CPU-bound: with one key per tenant only
	// this bound keeps a reconnect storm from taking the CPU that creates
	// need.
	MaxReplays int
	// MaxPageBytes bounds the encoded items of one task-list page
	// (default 4 MiB); the page ends early and its cursor continues it.
	MaxPageBytes int
	// HeartbeatInterval is how often processes heartbeat (default 10s):
	// GET /monitoring/workers shows a process up while its last
	// heartbeat is at most three intervals old.
	HeartbeatInterval time.Duration
}

// Engine is what the API needs from the execution engine; nil when the
// process runs no workers.
type Engine interface {
	// Notify wakes the workers after a create.
	Notify()
	// Cancel stops the local processor of a task, if it runs here.
	Cancel(id uuid.UUID) bool
}

// Deps are the API's collaborators.
type Deps struct {
	Store     store.API
	Registry  *registry.Registry
	Artifacts artifact.Store
	Engine    Engine
	Logger    *slog.Logger
	// Events serves the SSE streams (nil: the routes answer 503).
	Events *stream.Relay
	// Executors are the configured executors a task's provider_type may
	// name; nil accepts any of the type's declared providers unchecked.
	Executors *executor.Set
	// Callbacks receive executors' webhooks by executor type: each is
	// served at POST /api/v1/callbacks/{type}/{token}, without an API key
	// (the handler checks the job's unguessable token).
	Callbacks map[string]http.Handler
	// Metrics serves GET /metrics (the Prometheus text format), without
	// an API key; nil: no /metrics.
	Metrics http.Handler
	// Dashboard serves the web dashboard, without an API key (the page
	// asks for one), on each of DashboardPatterns; nil: no dashboard.
	Dashboard http.Handler
	// DashboardPatterns are the ServeMux patterns Dashboard is mounted on
	// ("GET /{$}", "GET /ui/{path...}"); they must not overlap /api/.
	DashboardPatterns []string
}

// Server serves the HTTP API.
type Server struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	api     huma.API
	mux     *http.ServeMux
	types   map[string]*typeSchemas
	ordered []*typeSchemas
	keys    *keyCache
	streams *streamLimits
	// probes shares the probes of executors' servers (monitoring).
	probes *serverProbes

	createUnion, publicUnion, updateUnion *huma.Schema
	// createCheck validates union create bodies (see unionSchemas).
	createCheck *huma.Schema

	// wfBuilder checks workflow steps' bodies (workflowBuilder).
	wfOnce    sync.Once
	wfBuilder *workflow.Builder
}

// New builds the API for the registered types.
func New(cfg Config, deps Deps) (*Server, error) {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.KeyCacheTTL <= 0 {
		cfg.KeyCacheTTL = 30 * time.Second
	}
	if cfg.MaxStreamsPerKey <= 0 {
		cfg.MaxStreamsPerKey = 16
	}
	if cfg.MaxReplaysPerKey <= 0 {
		cfg.MaxReplaysPerKey = 4
	}
	if cfg.MaxReplays <= 0 {
		cfg.MaxReplays = runtime.GOMAXPROCS(0)
	}
	if cfg.MaxPageBytes <= 0 {
		cfg.MaxPageBytes = 4 << 20
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 10 * time.Second
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, deps: deps, log: log, mux: http.NewServeMux(), types: map[string]*typeSchemas{}}
	s.keys = newKeyCache(deps.Store, cfg.KeyCacheTTL)
	s.probes = &serverProbes{last: map[string]time.Time{}}
	s.streams = newStreamLimits(cfg.MaxStreamsPerKey, cfg.MaxReplaysPerKey, cfg.MaxReplays)
	installErrors()
	configureHuma()

	hc := huma.DefaultConfig("Compute Server API", cfg.Version)
	hc.CreateHooks = nil // no $schema links in bodies
	hc.DocsPath = ""     // the default docs page loads assets from a CDN
	hc.OpenAPIPath = "/openapi"
	hc.Tags = docTags()
	typeNames := map[reflect.Type]string{}
	for _, def := range deps.Registry.All() {
		typeNames[def.Model] = camel(def.Name) + "Fields"
		typeNames[def.Update] = camel(def.Name) + "Update"
	}
	hc.Components.Schemas = huma.NewMapRegistry(refPrefix, schemaNamer(typeNames))
	registerAliases(hc.Components.Schemas)
	hc.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		"bearer": {Type: "http", Scheme: "bearer", Description: "An API key: `Authorization: Bearer csk_…`."},
	}
	hc.Info.Description = "Accepts typed units of AI/GPU work, stores them durably, schedules and runs them, and reports every change."
	s.api = humago.New(s.mux, hc)
	s.api.UseMiddleware(nameSpan, s.authenticate, s.checkBody)

	reg := s.api.OpenAPI().Components.Schemas
	for _, def := range deps.Registry.All() {
		ts, err := buildTypeSchemas(reg, def)
		if err != nil {
			return nil, err
		}
		s.types[def.Name] = ts
		s.ordered = append(s.ordered, ts)
	}
	if len(s.ordered) == 0 {
		return nil, fmt.Errorf("api: no task types registered")
	}
	s.createUnion, s.createCheck, s.publicUnion, s.updateUnion = unionSchemas(reg, s.ordered)

	s.registerHealth()
	if err := s.registerDocs(); err != nil {
		return nil, err
	}
	s.registerTaskRoutes()
	s.registerArtifactRoutes()
	s.registerEventRoutes()
	s.registerWebhookRoutes()
	s.registerMonitoringRoutes()
	if deps.Metrics != nil {
		s.mux.Handle("GET /metrics", deps.Metrics)
	}
	if deps.Dashboard != nil {
		for _, p := range deps.DashboardPatterns {
			s.mux.Handle(p, deps.Dashboard)
		}
	}
	s.registerSchedulingRoutes()
	s.registerWorkflowRoutes()
	for kind, h := range deps.Callbacks {
		s.mux.Handle("POST /api/v1/callbacks/"+kind+"/{token}", h)
	}
	s.finishDocument()
	return s, nil
}

// Handler returns the HTTP handler: panic recovery, exact routing with
// problem+json 404 and 405 (routing.go), and the text checks of query
// parameters and headers (input.go) around the routes.
func (s *Server) Handler() http.Handler {
	return telemetry.Middleware(s.handler())
}

// handler is Handler without the trace span (telemetry.Middleware).
func (s *Server) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
				writeProblem(w, http.StatusInternalServerError, "internal error", nil)
			}
		}()
		if !s.route(w, r) {
			return
		}
		if errs := requestTextErrors(r); len(errs) > 0 {
			writeProblem(w, http.StatusUnprocessableEntity, "validation failed", errs)
			return
		}
		s.mux.ServeHTTP(w, r)
	})
}

// nameSpan names the request's trace span after its operation's route.
func nameSpan(ctx huma.Context, next func(huma.Context)) {
	telemetry.NameSpan(ctx.Context(), ctx.Operation().Method, ctx.Operation().Path)
	next(ctx)
}

// OpenAPI returns the OpenAPI document.
func (s *Server) OpenAPI() *huma.OpenAPI { return s.api.OpenAPI() }

// bearer marks an operation as needing an API key.
var bearer = []map[string][]string{{"bearer": {}}}

func (s *Server) registerHealth() {
	huma.Register(s.api, huma.Operation{
		OperationID: "healthz", Method: http.MethodGet, Path: "/healthz", Summary: "Liveness", Tags: []string{"Operations"},
	}, func(ctx context.Context, _ *struct{}) (*statusOutput, error) {
		return &statusOutput{Body: statusBody{Status: "ok"}}, nil
	})
	huma.Register(s.api, huma.Operation{
		OperationID: "readyz", Method: http.MethodGet, Path: "/readyz", Summary: "Readiness: the database takes writes",
		Description: "Commits a one-row write and, on SQLite, checks the free space beside the database file. 503 with Retry-After when the database is unreachable or full.",
		Tags:        []string{"Operations"}, Errors: []int{http.StatusServiceUnavailable},
	}, func(ctx context.Context, _ *struct{}) (*statusOutput, error) {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := s.deps.Store.CheckWritable(ctx); err != nil {
			s.log.Warn("readiness check failed", "error", err)
			msg := "the database is not reachable or does not accept writes"
			if errors.Is(err, store.ErrFull) {
				msg = "the database is not writable: it is out of space"
			}
			return nil, storeProblem(http.StatusServiceUnavailable, msg)
		}
		return &statusOutput{Body: statusBody{Status: "ready"}}, nil
	})
}

type statusBody struct {
	Status string `json:"status"`
}

type statusOutput struct {
	Body statusBody
}
