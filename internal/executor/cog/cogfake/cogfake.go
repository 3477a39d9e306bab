// Package cogfake is a fake of a self-hosted Cog container's HTTP API for
// tests, built from reference/executors.md §3.2 and §3.3 (every behaviour
// names its section): PUT /predictions/{id} and POST /predictions, sync or
// with Prefer: respond-async; results only by webhook (there is no GET for
// a prediction); start, output, logs and completed webhooks with the
// WEBHOOK_AUTH_TOKEN bearer, throttled, the terminal one retried; cancel;
// the health-check states; one prediction slot by default (409 when busy,
// 503 before setup finished); nothing retained after completion.
//
// For reconcile tests a container can lose its terminal callbacks
// (DropCompleted) or restart, forgetting everything in flight (Restart).
// Timing is configurable and a phase set to Forever ends only through
// Advance, so tests are fast and deterministic.
package cogfake

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/computeserver/compute/internal/executor/internal/fakekit"
)

// The health-check states (§3.2 GET /health-check).
const (
	HealthStarting    = "STARTING"
	HealthReady       = "READY"
	HealthBusy        = "BUSY"
	HealthSetupFailed = "SETUP_FAILED"
	HealthDefunct     = "DEFUNCT"
	HealthUnhealthy   = "UNHEALTHY"
)

// The prediction statuses.
const (
	StatusStarting   = "starting"
	StatusProcessing = "processing"
	StatusSucceeded  = "succeeded"
	StatusFailed     = "failed"
	StatusCanceled   = "canceled"
)

// The webhook events (§3.2: the same set as Replicate's, §3.1).
const (
	EventStart     = "start"
	EventOutput    = "output"
	EventLogs      = "logs"
	EventCompleted = "completed"
)

// Forever is a phase duration that ends only through Advance or
// FinishSetup.
const Forever = fakekit.Forever

// Config sets the fake's behaviour. The zero value is ready at once, has
// one slot and finishes predictions at once.
type Config struct {
	// SetupTime is how long the container is STARTING (Forever: until
	// FinishSetup); SetupFails ends setup in SETUP_FAILED (§3.2).
	SetupTime  time.Duration
	SetupFails bool
	// Slots is how many predictions run at once (default 1, §3.2 "one
	// slot unless @cog.concurrent").
	Slots int
	// RunTime is how long a prediction runs, split into LogLines+1 steps:
	// a log line after each of the first LogLines, the output after the
	// last.
	RunTime  time.Duration
	LogLines int
	// RequiredInputs are input fields whose absence answers 422 (§3.2).
	RequiredInputs []string
	// WebhookAuthToken is WEBHOOK_AUTH_TOKEN: sent as a bearer token with
	// every webhook when set (§3.2).
	WebhookAuthToken string
	// WebhookThrottle is the least time between two logs or output
	// webhooks (default 500 ms, COG_THROTTLE_RESPONSE_INTERVAL, §3.2).
	WebhookThrottle time.Duration
	// WebhookRetries and WebhookBackoff retry the terminal webhook on
	// 429/500/502/503/504 or a transport error (defaults 12 and 100 ms,
	// doubling; §3.2 webhook.rs).
	WebhookRetries int
	WebhookBackoff time.Duration
	// DropCompleted makes the container never send terminal webhooks, as
	// when the callback is lost: the result is gone (§3.2 "a missed
	// terminal webhook loses the result").
	DropCompleted bool
	// Client delivers webhooks (default: a client with a 30 s timeout,
	// §3.2).
	Client *http.Client
	// Outcome decides how a prediction ends; nil succeeds with the default
	// PNG output.
	Outcome func(Request) Outcome
}

// Outcome is how a prediction ends. The zero value succeeds with a list of
// num_outputs (default 1) PNGs of the input's width × height (default
// 64 × 64) as base64 data URLs (§3.2: file outputs are data URLs without
// --upload-url).
type Outcome struct {
	// Error, when set, fails the prediction with it.
	Error string
	// Output, when not nil, replaces the default output.
	Output any
}

// Request is a recorded prediction request (POST or PUT).
type Request struct {
	// Method and ID (the path's or the body's; generated for a POST
	// without one).
	Method, ID string
	// Body and Header are as sent.
	Body   []byte
	Header http.Header
	// Code is the HTTP status answered.
	Code int
	// At is when it arrived.
	At time.Time
}

// Delivery is one recorded webhook attempt: ID is the prediction's id,
// Status the one in the body.
type Delivery = fakekit.Delivery

// Fake is a Cog container's HTTP API as an http.Handler. Create it with
// New and Close it when done.
type Fake struct {
	cfg     Config
	changes fakekit.Changes
	ctx     context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup

	mu          sync.Mutex
	seq         int
	health      string // an override (DEFUNCT, UNHEALTHY) or ""
	setupStart  time.Time
	setupEnd    time.Time
	setupFailed bool
	setupGo     chan struct{} // FinishSetup
	setupStop   context.CancelFunc
	preds       map[string]*prediction // in flight only
	requests    fakekit.Journal[Request]
	cancels     fakekit.Journal[string]
	deliveries  fakekit.Journal[Delivery]
	restarts    int
}

// New returns a fake with cfg's behaviour; its setup starts at once.
func New(cfg Config) *Fake {
	if cfg.Slots == 0 {
		cfg.Slots = 1
	}
	if cfg.WebhookThrottle == 0 {
		cfg.WebhookThrottle = 500 * time.Millisecond
	}
	if cfg.WebhookRetries == 0 {
		cfg.WebhookRetries = 12
	}
	if cfg.WebhookBackoff == 0 {
		cfg.WebhookBackoff = 100 * time.Millisecond
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 30 * time.Second}
	}
	ctx, stop := context.WithCancel(context.Background())
	f := &Fake{cfg: cfg, ctx: ctx, stop: stop, preds: map[string]*prediction{}}
	f.mu.Lock()
	f.setupLocked()
	f.mu.Unlock()
	return f
}

// setupLocked starts the container's setup (§3.2 health-check setup).
func (f *Fake) setupLocked() {
	ctx, stop := context.WithCancel(f.ctx)
	f.setupStart, f.setupEnd, f.setupFailed = time.Now(), time.Time{}, false
	f.setupGo, f.setupStop = make(chan struct{}, 1), stop
	if f.cfg.SetupTime == 0 {
		// No setup time: ready as the fake starts, not a moment later
		// (a request racing the goroutine below got a 503).
		stop()
		f.setupEnd, f.setupFailed = f.setupStart, f.cfg.SetupFails
		return
	}
	advance := f.setupGo
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		if fakekit.Phase(f.cfg.SetupTime, advance, ctx.Done(), nil) == fakekit.Interrupted {
			return
		}
		f.mu.Lock()
		f.setupEnd, f.setupFailed = time.Now(), f.cfg.SetupFails
		f.mu.Unlock()
		f.changes.Notify()
	}()
}

// Close stops every prediction, webhook and setup and waits for them. It
// is idempotent.
func (f *Fake) Close() {
	f.stop()
	f.wg.Wait()
}

// Server is a Fake served on a loopback port.
type Server struct {
	*Fake
	// Served.URL is the container's base URL (http://127.0.0.1:port).
	fakekit.Served
}

// NewServer starts a Fake on a loopback port.
func NewServer(cfg Config) *Server {
	f := New(cfg)
	return &Server{Fake: f, Served: fakekit.Serve(f)}
}

// Close stops the server and the fake.
func (s *Server) Close() {
	s.Shutdown()
	s.Fake.Close()
}

// FinishSetup ends a setup that waits Forever.
func (f *Fake) FinishSetup() {
	f.mu.Lock()
	ch := f.setupGo
	f.mu.Unlock()
	select {
	case ch <- struct{}{}:
	default:
	}
}

// SetHealth forces the health-check state (HealthDefunct,
// HealthUnhealthy); "" returns to the computed one.
func (f *Fake) SetHealth(state string) {
	f.mu.Lock()
	f.health = state
	f.mu.Unlock()
	f.changes.Notify()
}

// Restart is a container restart (§3.3 knob): every prediction in flight
// is forgotten without a webhook and setup starts again.
func (f *Fake) Restart() {
	f.mu.Lock()
	for id, p := range f.preds {
		p.kill()
		delete(f.preds, id)
	}
	f.setupStop()
	f.restarts++
	f.health = ""
	f.setupLocked()
	f.mu.Unlock()
	f.changes.Notify()
}

// Health returns the health-check state.
func (f *Fake) Health() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.healthLocked()
}

func (f *Fake) healthLocked() string {
	switch {
	case f.health != "":
		return f.health
	case f.setupEnd.IsZero():
		return HealthStarting
	case f.setupFailed:
		return HealthSetupFailed
	case len(f.preds) >= f.cfg.Slots:
		return HealthBusy
	}
	return HealthReady
}

// WaitHealth blocks until the health-check state is state, or ctx ends.
func (f *Fake) WaitHealth(ctx context.Context, state string) error {
	return f.changes.Until(ctx, func() bool { return f.Health() == state })
}

// Requests returns every prediction request received, in order.
func (f *Fake) Requests() []Request {
	return f.requests.All()
}

// Cancels returns the ids of every cancel request received, in order.
func (f *Fake) Cancels() []string {
	return f.cancels.All()
}

// Deliveries returns every webhook attempt, in order.
func (f *Fake) Deliveries() []Delivery {
	return f.deliveries.All()
}

// WaitDeliveries blocks until n webhook attempts were made, or ctx ends.
func (f *Fake) WaitDeliveries(ctx context.Context, n int) error {
	return f.deliveries.WaitLen(ctx, n)
}

// Status returns the status of prediction id while it is in flight, and
// "" once it is done or unknown (§3.2: completed predictions are
// forgotten).
func (f *Fake) Status(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.preds[id]; ok {
		return p.status
	}
	return ""
}

// WaitStatus blocks until prediction id has status ("" for gone), or ctx
// ends.
func (f *Fake) WaitStatus(ctx context.Context, id, status string) error {
	return f.changes.Until(ctx, func() bool { return f.Status(id) == status })
}

// Advance ends prediction id's current step now: it writes its next log
// line, or ends after the last step. It reports false when a step is
// already pending or the prediction is not in flight.
func (f *Fake) Advance(id string) bool {
	f.mu.Lock()
	p, ok := f.preds[id]
	f.mu.Unlock()
	return ok && fakekit.Nudge(p.advance)
}

// ServeHTTP routes the §3.2 table.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/":
		f.discovery(w)
	case r.Method == http.MethodGet && r.URL.Path == "/health-check":
		f.healthCheck(w)
	case r.Method == http.MethodGet && r.URL.Path == "/openapi.json":
		f.openAPI(w)
	case r.Method == http.MethodPost && r.URL.Path == "/shutdown":
		f.SetHealth(HealthDefunct)
		fakekit.WriteJSON(w, http.StatusOK, map[string]any{})
	case len(segs) == 1 && segs[0] == "predictions" && r.Method == http.MethodPost:
		f.predict(w, r, "")
	case len(segs) == 2 && segs[0] == "predictions" && r.Method == http.MethodPut:
		f.predict(w, r, segs[1])
	case len(segs) == 2 && segs[0] == "predictions":
		// §3.2 "There is no GET for a prediction": the route takes PUT
		// only, so other methods get 405 (⚠ inferred from routes.rs).
		w.Header().Set("Allow", http.MethodPut)
		fakekit.WriteJSON(w, http.StatusMethodNotAllowed, map[string]string{"detail": "Method Not Allowed"})
	case len(segs) == 3 && segs[0] == "predictions" && segs[2] == "cancel" && r.Method == http.MethodPost:
		f.cancel(w, segs[1])
	default:
		fakekit.WriteJSON(w, http.StatusNotFound, map[string]string{"detail": "Not Found"})
	}
}

// discovery answers GET / (§3.2).
func (f *Fake) discovery(w http.ResponseWriter) {
	fakekit.WriteJSON(w, http.StatusOK, map[string]string{
		"cog_version": "0.0.0-cogfake", "docs_url": "/docs", "openapi_url": "/openapi.json",
		"shutdown_url": "/shutdown", "healthcheck_url": "/health-check", "predictions_url": "/predictions",
		"predictions_idempotent_url": "/predictions/{prediction_id}",
		"predictions_cancel_url":     "/predictions/{prediction_id}/cancel",
	})
}

// healthCheck answers 200 always, with the state and setup (§3.2).
func (f *Fake) healthCheck(w http.ResponseWriter) {
	f.mu.Lock()
	state := f.healthLocked()
	setup := map[string]any{"started_at": stamp(f.setupStart), "completed_at": stamp(f.setupEnd), "logs": ""}
	switch {
	case f.setupEnd.IsZero():
		setup["status"] = "starting"
	case f.setupFailed:
		setup["status"], setup["logs"] = "failed", "setup failed: weights not found\n"
	default:
		setup["status"] = "succeeded"
	}
	f.mu.Unlock()
	fakekit.WriteJSON(w, http.StatusOK, map[string]any{"status": state, "setup": setup})
}

// openAPI answers a minimal per-model schema (§3.2 GET /openapi.json).
func (f *Fake) openAPI(w http.ResponseWriter) {
	props := map[string]any{
		"prompt": map[string]string{"type": "string"}, "width": map[string]string{"type": "integer"},
		"height": map[string]string{"type": "integer"}, "num_outputs": map[string]string{"type": "integer"},
	}
	fakekit.WriteJSON(w, http.StatusOK, map[string]any{
		"openapi": "3.0.2", "info": map[string]string{"title": "Cog", "version": "0.1.0"},
		"components": map[string]any{"schemas": map[string]any{
			"Input":  map[string]any{"type": "object", "properties": props, "required": f.cfg.RequiredInputs},
			"Output": map[string]any{"type": "array", "items": map[string]string{"type": "string", "format": "uri"}},
		}},
	})
}

func stamp(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(time.RFC3339Nano)
}
