// Package falfake is a fake of fal.ai's queue API for tests, built from
// reference/executors.md §2 (every behaviour names its subsection): submit
// at /{model_id}[/{subpath}], status, result and cancel at
// /{owner}/{app}/requests/{id}…, the IN_QUEUE → IN_PROGRESS → COMPLETED
// progression with queue positions and logs, errors surfacing at the result
// of a COMPLETED request, the start deadline of X-Fal-Request-Timeout, a
// per-key concurrency limit, output images served by the fake from URLs
// that expire, and the CDN storage inputs are uploaded to (storage.go, from
// fal's Python client).
//
// Timing is configurable (QueueTime, RunTime) and a phase set to Forever
// ends only when a test calls Advance, so tests are fast and deterministic.
// Not reproduced: webhooks (?fal_webhook is recorded, never called) and the
// automatic retries fal performs inside its queue.
package falfake

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/computeserver/compute/internal/executor/internal/fakekit"
)

// The request statuses (§2.2: "The status set is IN_QUEUE → IN_PROGRESS →
// COMPLETED"; failures are not a status).
const (
	StatusInQueue    = "IN_QUEUE"
	StatusInProgress = "IN_PROGRESS"
	StatusCompleted  = "COMPLETED"
)

// Forever is a phase duration that ends only through Advance.
const Forever = fakekit.Forever

// Config sets the fake's behaviour. The zero value accepts any key, starts
// and finishes requests at once and keeps results and media for an hour.
type Config struct {
	// Keys are the accepted FAL_KEY values (§2.1 "Authorization: Key
	// <FAL_KEY>"); empty accepts any non-empty key.
	Keys []string
	// QueueTime is how long a request stays IN_QUEUE before it may start.
	QueueTime time.Duration
	// RunTime is how long a request stays IN_PROGRESS.
	RunTime time.Duration
	// LogLines is how many log entries a run writes, spread over RunTime
	// (§2.2 IN_PROGRESS "logs").
	LogLines int
	// Runners bounds how many requests run at once (0: no bound); the
	// others wait IN_QUEUE with a queue_position (§2.7 "Queues of thousands
	// are normal").
	Runners int
	// MaxConcurrentPerKey makes a submit answer 429 while the key has this
	// many requests not COMPLETED (0: no limit) (issue 11: "fal a per-key
	// concurrency"; §2.3 "429" is retried by clients).
	MaxConcurrentPerKey int
	// ResultTTL and LargeResultTTL are how long a result stays fetchable
	// after completion, below and from 10 KB (§2.2 Retention: 1 h and
	// 6 min, the defaults).
	ResultTTL, LargeResultTTL time.Duration
	// MediaTTL is how long output image URLs answer (default 1 h); a
	// request's X-Fal-Object-Lifecycle-Preference overrides it (§2.3).
	MediaTTL time.Duration
	// ResultWhileRunning is the status of a result fetched before
	// completion: 202 with the status body (default, as aimock answers), or
	// 400 {"detail": "Request is still in progress"} (§2.2 ⚠ unconfirmed).
	ResultWhileRunning int
	// IgnoreCancel makes a running request finish normally after a cancel
	// (§2.2: the app "receives a cancellation signal and decides").
	IgnoreCancel bool
	// Outcome decides how a request ends; nil uses DefaultOutcome.
	Outcome func(Submission) Outcome
	// MaxSide caps the side of the images rendered (default 256): a
	// larger requested size is rendered scaled down, keeping its aspect
	// ratio, and the output lists the size rendered. fal's default
	// landscape_4_3 is 1024 × 768, costly to render for every test.
	MaxSide int
	// TokenTTL is how long a storage token is valid (default 1 h ⚠);
	// MaxUploadBytes refuses larger uploads with 413 (0: no limit);
	// UploadTTL is how long an uploaded file is served (0: never expires).
	TokenTTL       time.Duration
	MaxUploadBytes int64
	UploadTTL      time.Duration
}

// Outcome is how a request ends. The zero value is a success with the
// default image output (§2.5).
type Outcome struct {
	// Output, when not nil, is the result body of a success.
	Output any
	// Status, when not zero, ends the request COMPLETED with an error: the
	// result answers this HTTP status with {"detail": Detail} (§2.2
	// "Failures are not a status").
	Status int
	// Detail is the error body's detail: a message or FastAPI-style list.
	Detail any
	// ErrorType goes in the body's error_type and the x-fal-error-type
	// header (§2.2).
	ErrorType string
}

// DefaultOutcome fails a request without a "prompt" with fal's 422
// validation detail (§2.2, §2.4 example) and succeeds otherwise; a
// request to TrainingModel needs images_data_url instead (training.go).
func DefaultOutcome(s Submission) Outcome {
	if s.Model == TrainingModel {
		return trainingOutcome(s)
	}
	var in struct {
		Prompt *string `json:"prompt"`
	}
	if json.Unmarshal(s.Input, &in) != nil || in.Prompt == nil {
		return Outcome{Status: http.StatusUnprocessableEntity, Detail: []map[string]any{{
			"loc": []string{"body", "prompt"}, "msg": "field required", "type": "value_error.missing",
		}}}
	}
	return Outcome{}
}

// Submission is a recorded submit.
type Submission struct {
	// ID is the request_id given (empty when the submit was refused).
	ID string
	// Model is the submitted model id with its subpath; App is the
	// owner/app that status, result and cancel use (§2.1 subpath gotcha).
	Model, App string
	// Input is the body as sent.
	Input json.RawMessage
	// Header is the request's headers (the fal key included).
	Header http.Header
	// Webhook is the ?fal_webhook URL, if any (recorded, never called).
	Webhook string
	// Code is the HTTP status the submit answered.
	Code int
	// At is when it arrived.
	At time.Time
}

// Cancel is a recorded cancel.
type Cancel struct {
	// ID is the request id in the URL.
	ID string
	// Code and Outcome are the answer (§2.2 Cancel).
	Code    int
	Outcome string
	// At is when it arrived.
	At time.Time
}

// Fake is the fal queue API as an http.Handler. Create it with New and
// Close it when done.
type Fake struct {
	cfg     Config
	files   *fakekit.Files
	changes fakekit.Changes
	ctx     context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup

	mu          sync.Mutex
	seq         int
	jobs        map[string]*job
	order       []*job
	submissions fakekit.Journal[Submission]
	cancels     fakekit.Journal[Cancel]
	polls       map[string]int
	failNext    []int

	tokens       map[string]time.Time // storage token -> expiry
	tokensIssued int
	failToken    []int
	failUpload   []int
	uploads      fakekit.Journal[Upload]
}

// New returns a fake with cfg's behaviour.
func New(cfg Config) *Fake {
	if cfg.ResultTTL == 0 {
		cfg.ResultTTL = time.Hour
	}
	if cfg.LargeResultTTL == 0 {
		cfg.LargeResultTTL = 6 * time.Minute
	}
	if cfg.MediaTTL == 0 {
		cfg.MediaTTL = time.Hour
	}
	if cfg.ResultWhileRunning == 0 {
		cfg.ResultWhileRunning = http.StatusAccepted
	}
	if cfg.Outcome == nil {
		cfg.Outcome = DefaultOutcome
	}
	if cfg.MaxSide == 0 {
		cfg.MaxSide = 256
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = time.Hour
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Fake{
		cfg: cfg, files: fakekit.NewFiles("/files/"), ctx: ctx, stop: stop,
		jobs: map[string]*job{}, polls: map[string]int{}, tokens: map[string]time.Time{},
	}
}

// Close stops every request's progression and waits for it. It is
// idempotent.
func (f *Fake) Close() {
	f.stop()
	f.wg.Wait()
}

// Server is a Fake served on a loopback port.
type Server struct {
	*Fake
	// Served.URL is the base URL (http://127.0.0.1:port), the fake's
	// https://queue.fal.run.
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

// FailNext makes the next n submits answer code without queueing: 429
// with a {"detail"} body, or for 502/503/504 an "ingress" error, an HTML
// body without x-fal-request-id (§2.3 client retry policy, §2.6 knobs).
func (f *Fake) FailNext(n, code int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.failNext = append(f.failNext, code)
	}
}

// Submissions returns every submit received, in order.
func (f *Fake) Submissions() []Submission {
	return f.submissions.All()
}

// Cancels returns every cancel received, in order.
func (f *Fake) Cancels() []Cancel {
	return f.cancels.All()
}

// Polls returns how many status requests request id received.
func (f *Fake) Polls(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.polls[id]
}

// Status returns request id's status ("" when unknown).
func (f *Fake) Status(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if j, ok := f.jobs[id]; ok {
		return j.status
	}
	return ""
}

// WaitStatus blocks until request id has status, or ctx ends.
func (f *Fake) WaitStatus(ctx context.Context, id, status string) error {
	return f.changes.Until(ctx, func() bool { return f.Status(id) == status })
}

// Advance ends request id's current step now: a queued request starts
// (whatever Runners says); a running one writes its next log entry, or
// completes after the last (a run has LogLines+1 steps). It reports false
// when a step is already pending or the request is unknown.
func (f *Fake) Advance(id string) bool {
	f.mu.Lock()
	j, ok := f.jobs[id]
	f.mu.Unlock()
	return ok && fakekit.Nudge(j.advance)
}

// Downloads returns how often the output file at url was fetched.
func (f *Fake) Downloads(url string) int {
	_, path, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(url, "http://"), "https://"), "/")
	return f.files.Downloads("/" + path)
}

// ServeHTTP routes a request: storage tokens and uploads (storage.go),
// output and uploaded files under /files/, submit on POST (§2.1), status,
// result and cancel on GET and PUT.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/storage/auth/token":
		f.storageToken(w, r)
		return
	case r.Method == http.MethodPost && r.URL.Path == "/files/upload":
		f.upload(w, r)
		return
	}
	if strings.HasPrefix(r.URL.Path, "/files/") {
		f.files.ServeHTTP(w, r)
		return
	}
	key, ok := f.authorize(r)
	if !ok {
		// §2.1 Auth; the body follows fal's {"detail"} errors (§2.2) ⚠.
		fakekit.WriteJSON(w, http.StatusUnauthorized, map[string]string{"detail": "Missing or invalid Authorization header: expected 'Key <FAL_KEY>'"})
		return
	}
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if r.Method == http.MethodPost {
		f.submit(w, r, key, segs)
		return
	}
	k := slices.Index(segs, "requests")
	if k < 2 || k+1 >= len(segs) {
		fakekit.WriteJSON(w, http.StatusNotFound, map[string]string{"detail": "Not Found"})
		return
	}
	app, id, rest := strings.Join(segs[:k], "/"), segs[k+1], strings.Join(segs[k+2:], "/")
	switch {
	case r.Method == http.MethodGet && rest == "":
		f.result(w, app, id)
	case r.Method == http.MethodGet && rest == "status":
		f.status(w, r, app, id)
	case r.Method == http.MethodGet && rest == "status/stream":
		f.stream(w, r, app, id)
	case r.Method == http.MethodPut && rest == "cancel":
		f.cancel(w, app, id)
	default:
		fakekit.WriteJSON(w, http.StatusMethodNotAllowed, map[string]string{"detail": "Method Not Allowed"})
	}
}

// authorize checks "Authorization: Key <FAL_KEY>" (§2.1).
func (f *Fake) authorize(r *http.Request) (string, bool) {
	key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Key ")
	if !ok || key == "" {
		return "", false
	}
	return key, len(f.cfg.Keys) == 0 || slices.Contains(f.cfg.Keys, key)
}

// appOf returns the owner/app part of a model id: two segments, three for
// the namespaced apps (§2.1: "workflows/…, comfy/… keep the namespace
// prefix").
func appOf(segs []string) (string, bool) {
	n := 2
	if len(segs) > 0 && (segs[0] == "workflows" || segs[0] == "comfy") {
		n = 3
	}
	if len(segs) < n || slices.Contains(segs[:n], "") {
		return "", false
	}
	return strings.Join(segs[:n], "/"), true
}

// requestOf finds request id under app; a client that polls with the
// submit subpath gets 404, as in production (§2.1 subpath gotcha).
func (f *Fake) requestOf(app, id string) (*job, bool) {
	j, ok := f.jobs[id]
	if !ok || j.app != app {
		return nil, false
	}
	return j, true
}

func (f *Fake) notFound(w http.ResponseWriter) {
	fakekit.WriteJSON(w, http.StatusNotFound, map[string]string{"detail": "Request not found"})
}

// parseTimeout reads X-Fal-Request-Timeout, seconds (§2.3); fractions are
// accepted so tests stay fast.
func parseTimeout(h http.Header) (time.Duration, error) {
	v := h.Get("X-Fal-Request-Timeout")
	if v == "" {
		return 0, nil
	}
	s, err := strconv.ParseFloat(v, 64)
	if err != nil || s <= 0 {
		return 0, fmt.Errorf("X-Fal-Request-Timeout must be a positive number of seconds, got %q", v)
	}
	return time.Duration(s * float64(time.Second)), nil
}

// mediaTTL reads X-Fal-Object-Lifecycle-Preference (§2.3):
// {"expiration_duration_seconds": N}, null meaning never.
func (f *Fake) mediaTTL(h http.Header) time.Duration {
	v := h.Get("X-Fal-Object-Lifecycle-Preference")
	if v == "" {
		return f.cfg.MediaTTL
	}
	var pref struct {
		Seconds *float64 `json:"expiration_duration_seconds"`
	}
	if json.Unmarshal([]byte(v), &pref) != nil {
		return f.cfg.MediaTTL
	}
	if pref.Seconds == nil {
		return 0
	}
	return time.Duration(*pref.Seconds * float64(time.Second))
}

// WaitLogs blocks until request id has at least n log entries, or ctx
// ends.
func (f *Fake) WaitLogs(ctx context.Context, id string, n int) error {
	return f.changes.Until(ctx, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		j, ok := f.jobs[id]
		return ok && len(j.logs) >= n
	})
}
