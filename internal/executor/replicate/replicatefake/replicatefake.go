// Package replicatefake is a fake of Replicate's predictions API for
// tests, built from reference/executors.md §3.1 and §3.3 (every behaviour
// names its section): create by version, model or deployment, get, cancel
// and list; the starting → processing → succeeded | failed | canceled |
// aborted lifecycle with logs, metrics, output files served by the fake and
// errors; Prefer: wait; Cancel-After deadlines; a create-rate limit
// answering 429 with Retry-After; data removal after a retention time; and
// webhooks filtered by webhook_events_filter, throttled and signed per
// Standard Webhooks.
//
// Timing is configurable (StartTime, RunTime) and a phase set to Forever
// ends only when a test calls Advance, so tests are fast and deterministic.
// Files uploaded to POST /v1/files are kept and their bytes readable by a
// test's model through Uploaded (files.go). Not reproduced: streaming
// (urls.stream), trainings.
package replicatefake

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/computeserver/compute/internal/executor/internal/fakekit"
	"github.com/computeserver/compute/internal/webhook"
)

// The prediction statuses (§3.1; terminal = the last four).
const (
	StatusStarting   = "starting"
	StatusProcessing = "processing"
	StatusSucceeded  = "succeeded"
	StatusFailed     = "failed"
	StatusCanceled   = "canceled"
	StatusAborted    = "aborted"
)

// The webhook events (§3.1 Webhooks).
const (
	EventStart     = "start"
	EventOutput    = "output"
	EventLogs      = "logs"
	EventCompleted = "completed"
)

// Forever is a phase duration that ends only through Advance.
const Forever = fakekit.Forever

// DefaultSecret is the webhook signing secret when Config.WebhookSecret is
// empty.
const DefaultSecret = "whsec_cmVwbGljYXRlZmFrZS13ZWJob29rLXNlY3JldC0zMmI=" // base64 of "replicatefake-webhook-secret-32b"

// Config sets the fake's behaviour. The zero value accepts any token and
// runs predictions at once.
type Config struct {
	// Token is the accepted API token (§3.1 "Authorization: Bearer
	// <token>"); empty accepts any non-empty token.
	Token string
	// StartTime is how long a prediction stays starting (a cold boot).
	StartTime time.Duration
	// RunTime is how long it stays processing, split into LogLines+1
	// steps: a log line after each of the first LogLines, the output after
	// the last.
	RunTime  time.Duration
	LogLines int
	// CreateLimit creates are allowed per CreateWindow (default one
	// minute); more answer 429 with Retry-After (§3.1 Errors: 600
	// creates/min). 0: no limit.
	CreateLimit  int
	CreateWindow time.Duration
	// MaxWait caps how long Prefer: wait holds a create (default 60 s,
	// §3.1).
	MaxWait time.Duration
	// Retention is how long after completion input, output, logs and
	// output files stay (default 1 h, §3.1 Retention); then data_removed.
	Retention time.Duration
	// WebhookSecret signs webhooks ("whsec_…"; default DefaultSecret).
	WebhookSecret string
	// WebhookThrottle is the least time between two logs or output
	// webhooks of a prediction (default 500 ms, §3.1 "throttled ≤ 1 per
	// 500 ms"); the later state is sent, coalesced.
	WebhookThrottle time.Duration
	// WebhookRetries is how often a completed webhook is retried after a
	// non-2xx answer or an error, WebhookBackoff apart, doubling (defaults
	// 3 and 100 ms; §3.1 "might be retried", schedule ⚠ unconfirmed).
	WebhookRetries int
	WebhookBackoff time.Duration
	// DuplicateCompleted sends every completed webhook twice (§5.2
	// "webhooks duplicate").
	DuplicateCompleted bool
	// Client delivers webhooks (default: a client with a 5 s timeout).
	Client *http.Client
	// Outcome decides how a prediction ends; nil succeeds with the default
	// PNG output.
	Outcome func(Create) Outcome
	// MaxFileBytes refuses a larger file upload with 413 (0: no limit).
	MaxFileBytes int64
}

// Outcome is how a prediction ends. The zero value succeeds with
// num_outputs (default 1) PNGs of the input's width × height (default
// 64 × 64), listed as URLs (§3.1 "output is model-specific").
type Outcome struct {
	// Error, when set, fails the prediction with it (§3.1 "error is
	// usually a string").
	Error string
	// Output, when not nil, replaces the default output.
	Output any
}

// Create is a recorded create request.
type Create struct {
	// ID is the prediction's id (empty when refused).
	ID string
	// Path is the create route; Version or Model what it named.
	Path, Version, Model string
	// Body is the request body as sent.
	Body []byte
	// Header is the request's headers.
	Header http.Header
	// Code is the HTTP status answered.
	Code int
	// At is when it arrived.
	At time.Time
}

// Delivery is one recorded webhook attempt: ID is the prediction's id,
// Status the one in the body.
type Delivery = fakekit.Delivery

// Fake is the Replicate API as an http.Handler. Create it with New and
// Close it when done.
type Fake struct {
	cfg     Config
	signer  *webhook.Signer
	files   *fakekit.Files
	changes fakekit.Changes
	ctx     context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup

	mu          sync.Mutex
	seq         int
	preds       map[string]*prediction
	order       []*prediction
	creates     fakekit.Journal[Create]
	createTimes []time.Time
	cancels     fakekit.Journal[string]
	deliveries  fakekit.Journal[Delivery]
	polls       map[string]int

	fileSeq     int
	stored      map[string]*storedFile
	fileUploads fakekit.Journal[FileUpload]
	failFiles   []int
}

// New returns a fake with cfg's behaviour; a bad WebhookSecret is an
// error.
func New(cfg Config) (*Fake, error) {
	if cfg.CreateWindow == 0 {
		cfg.CreateWindow = time.Minute
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = 60 * time.Second
	}
	if cfg.Retention == 0 {
		cfg.Retention = time.Hour
	}
	if cfg.WebhookSecret == "" {
		cfg.WebhookSecret = DefaultSecret
	}
	if cfg.WebhookThrottle == 0 {
		cfg.WebhookThrottle = 500 * time.Millisecond
	}
	if cfg.WebhookRetries == 0 {
		cfg.WebhookRetries = 3
	}
	if cfg.WebhookBackoff == 0 {
		cfg.WebhookBackoff = 100 * time.Millisecond
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 5 * time.Second}
	}
	signer, err := webhook.NewSigner(cfg.WebhookSecret)
	if err != nil {
		return nil, fmt.Errorf("replicate fake webhook secret: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Fake{
		cfg: cfg, signer: signer, files: fakekit.NewFiles("/files/"), ctx: ctx, stop: stop,
		preds: map[string]*prediction{}, polls: map[string]int{}, stored: map[string]*storedFile{},
	}, nil
}

// Close stops every prediction and webhook sender and waits for them. It
// is idempotent.
func (f *Fake) Close() {
	f.stop()
	f.wg.Wait()
}

// Server is a Fake served on a loopback port.
type Server struct {
	*Fake
	// Served.URL is the base URL, the fake's https://api.replicate.com (routes
	// start with /v1).
	fakekit.Served
}

// NewServer starts a Fake on a loopback port.
func NewServer(cfg Config) (*Server, error) {
	f, err := New(cfg)
	if err != nil {
		return nil, err
	}
	return &Server{Fake: f, Served: fakekit.Serve(f)}, nil
}

// Close stops the server and the fake.
func (s *Server) Close() {
	s.Shutdown()
	s.Fake.Close()
}

// Secret returns the webhook signing secret.
func (f *Fake) Secret() string { return f.cfg.WebhookSecret }

// Creates returns every create request received, in order.
func (f *Fake) Creates() []Create {
	return f.creates.All()
}

// Cancels returns the ids of every cancel request received, in order.
func (f *Fake) Cancels() []string {
	return f.cancels.All()
}

// Deliveries returns every webhook attempt, in order.
func (f *Fake) Deliveries() []Delivery {
	return f.deliveries.All()
}

// Polls returns how many GETs prediction id received.
func (f *Fake) Polls(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.polls[id]
}

// Status returns prediction id's status ("" when unknown).
func (f *Fake) Status(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.preds[id]; ok {
		return p.status
	}
	return ""
}

// WaitStatus blocks until prediction id has status, or ctx ends.
func (f *Fake) WaitStatus(ctx context.Context, id, status string) error {
	return f.changes.Until(ctx, func() bool { return f.Status(id) == status })
}

// WaitDeliveries blocks until n webhook attempts were made, or ctx ends.
func (f *Fake) WaitDeliveries(ctx context.Context, n int) error {
	return f.deliveries.WaitLen(ctx, n)
}

// Advance ends prediction id's current step now: a starting prediction
// starts processing; a processing one writes its next log line, or ends
// after the last step. It reports false when a step is already pending or
// the prediction is unknown.
func (f *Fake) Advance(id string) bool {
	f.mu.Lock()
	p, ok := f.preds[id]
	f.mu.Unlock()
	return ok && fakekit.Nudge(p.advance)
}

// ServeHTTP routes the §3.1 operations and the output files.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/files/") {
		f.files.ServeHTTP(w, r)
		return
	}
	if !f.authorized(r) {
		problem(w, http.StatusUnauthorized, "Unauthenticated", "You did not pass a valid authentication token")
		return
	}
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(segs) < 2 || segs[0] != "v1" {
		problem(w, http.StatusNotFound, "Not found", "The requested resource could not be found.")
		return
	}
	segs = segs[1:]
	switch {
	case segs[0] == "files":
		f.filesRoute(w, r, segs)
	case r.Method == http.MethodPost && len(segs) == 1 && segs[0] == "predictions":
		f.create(w, r, "", "")
	case r.Method == http.MethodPost && len(segs) == 4 && segs[0] == "models" && segs[3] == "predictions":
		f.create(w, r, segs[1]+"/"+segs[2], "")
	case r.Method == http.MethodPost && len(segs) == 4 && segs[0] == "deployments" && segs[3] == "predictions":
		f.create(w, r, "", segs[1]+"/"+segs[2])
	case r.Method == http.MethodGet && len(segs) == 1 && segs[0] == "predictions":
		f.list(w, r)
	case r.Method == http.MethodGet && len(segs) == 2 && segs[0] == "predictions":
		f.get(w, r, segs[1])
	case r.Method == http.MethodPost && len(segs) == 3 && segs[0] == "predictions" && segs[2] == "cancel":
		f.cancel(w, r, segs[1])
	case r.Method == http.MethodGet && strings.Join(segs, "/") == "webhooks/default/secret":
		fakekit.WriteJSON(w, http.StatusOK, map[string]string{"key": f.cfg.WebhookSecret})
	default:
		problem(w, http.StatusNotFound, "Not found", "The requested resource could not be found.")
	}
}

func (f *Fake) authorized(r *http.Request) bool {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && token != "" && (f.cfg.Token == "" || token == f.cfg.Token)
}

// problem answers a problem-details error (§3.1 Errors).
func problem(w http.ResponseWriter, code int, title, detail string) {
	fakekit.WriteJSON(w, code, map[string]any{"title": title, "detail": detail, "status": code})
}

// throttled reports whether a create exceeds CreateLimit per CreateWindow,
// and then the seconds until a slot frees (§3.1 429 with Retry-After).
func (f *Fake) throttledLocked(now time.Time) (bool, int) {
	if f.cfg.CreateLimit <= 0 {
		return false, 0
	}
	keep := f.createTimes[:0]
	for _, t := range f.createTimes {
		if now.Sub(t) < f.cfg.CreateWindow {
			keep = append(keep, t)
		}
	}
	f.createTimes = keep
	if len(keep) < f.cfg.CreateLimit {
		f.createTimes = append(f.createTimes, now)
		return false, 0
	}
	wait := keep[0].Add(f.cfg.CreateWindow).Sub(now)
	return true, max(1, int(math.Ceil(wait.Seconds())))
}

// WaitLogs blocks until prediction id has at least n log lines, or ctx
// ends.
func (f *Fake) WaitLogs(ctx context.Context, id string, n int) error {
	return f.changes.Until(ctx, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		p, ok := f.preds[id]
		return ok && len(p.logs) >= n
	})
}
