package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"go.uber.org/goleak"

	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/netguard"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/store/sqlstore"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/echo"
	"github.com/computeserver/compute/internal/testutil/testdb"
	"github.com/computeserver/compute/internal/webhook"
)

// childEnv, when set, makes the test binary a sender process for
// TestKilledMidDeliveryIsDeliveredAfterRestart instead of running tests.
const childEnv = "COMPUTE_WEBHOOK_TEST_SENDER_DSN"

// TestMain runs the sender child process when asked to, and otherwise the
// tests, failing the package when one leaves a goroutine behind.
func TestMain(m *testing.M) {
	if dsn := os.Getenv(childEnv); dsn != "" {
		runSender(dsn)
		return
	}
	goleak.VerifyTestMain(m)
}

// waitLimit bounds every wait.
const waitLimit = 20 * time.Second

func newRegistry() *registry.Registry {
	reg := registry.New()
	reg.MustRegister(echo.Type())
	return reg
}

// forEachDB runs fn on a fresh migrated store of every dialect.
func forEachDB(t *testing.T, fn func(t *testing.T, s store.Store)) {
	for _, d := range testdb.Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			fn(t, testdb.Open(t, d, newRegistry()))
		})
	}
}

// hook creates an echo task whose webhook receives its creation event
// only, so it has exactly one delivery; it returns the task id.
func hook(t *testing.T, s store.Store, url string) uuid.UUID {
	t.Helper()
	def, _ := newRegistry().Lookup(echo.Name)
	now := task.Now()
	tk := &task.Task{
		ID: uuid.Must(uuid.NewV7()), Type: echo.Name, Status: task.StatusPending, ProviderType: def.DefaultProvider,
		QueueName: "hooks-" + uuid.NewString()[:8], CreatedAt: now, UpdatedAt: now, RunAt: now.Add(time.Hour), MaxAttempts: 1,
		TimeoutSeconds: 60, Errors: []task.Error{}, WebhookURL: url, WebhookEvents: []string{"pending"},
	}
	if _, _, err := s.CreateTask(context.Background(), &store.Record{Task: tk, Fields: &echo.Fields{Message: "hi"}, Def: def}); err != nil {
		t.Fatalf("CreateTask: %v", err)
	}
	return tk.ID
}

// delivery returns the task's one delivery.
func delivery(t *testing.T, s store.Store, id uuid.UUID) store.Delivery {
	t.Helper()
	ds, err := s.ListDeliveries(context.Background(), id, store.AdminScope)
	if err != nil || len(ds) != 1 {
		t.Fatalf("ListDeliveries(%s) = %+v, %v; want one delivery", id, ds, err)
	}
	return ds[0]
}

// waitDelivery polls the task's delivery until it leaves pending.
func waitDelivery(t *testing.T, s store.Store, id uuid.UUID) store.Delivery {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		d := delivery(t, s, id)
		if d.Status != store.DeliveryPending {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivery still pending after %s: %+v", waitLimit, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func signer(t testing.TB) *webhook.Signer {
	s, err := webhook.NewSigner(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// request is one request a receiver got.
type request struct {
	at     time.Time
	header http.Header
	body   []byte
}

// receiver is a real HTTP server on loopback that answers each request
// with answer(n) (n counts from 1) and checks every request it gets with
// the Standard Webhooks reference library.
type receiver struct {
	t        *testing.T
	srv      *httptest.Server
	unsigned bool

	mu   sync.Mutex
	reqs []request
	got  chan struct{}
}

func newReceiver(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	verifier, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	rc := &receiver{t: t, got: make(chan struct{}, 100)}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("receiver: reading the body: %v", err)
		}
		if !rc.unsigned {
			if err := verifier.Verify(body, r.Header); err != nil {
				t.Errorf("receiver: the reference library refused the signature: %v (headers %v)", err, r.Header)
			}
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" || r.Method != http.MethodPost ||
			!strings.HasPrefix(r.Header.Get("User-Agent"), "compute-server/") {
			t.Errorf("receiver: %s with content type %q, user agent %q", r.Method, ct, r.Header.Get("User-Agent"))
		}
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, request{at: time.Now(), header: r.Header.Clone(), body: body})
		n := len(rc.reqs)
		rc.mu.Unlock()
		rc.got <- struct{}{}
		answer(n, w, r)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) requests() []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]request(nil), rc.reqs...)
}

// wait waits for the receiver's n-th request.
func (rc *receiver) wait(n int) {
	rc.t.Helper()
	deadline := time.After(waitLimit)
	for len(rc.requests()) < n {
		select {
		case <-rc.got:
		case <-deadline:
			rc.t.Fatalf("receiver got %d requests, want %d", len(rc.requests()), n)
		}
	}
}

func status(code int) func(int, http.ResponseWriter, *http.Request) {
	return func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }
}

// testConfig sends to loopback quickly: tiny retry delays, fast polling.
func testConfig(t testing.TB) webhook.Config {
	return webhook.Config{
		PollInterval: 20 * time.Millisecond,
		RetryMin:     50 * time.Millisecond,
		Timeout:      5 * time.Second,
		Policy:       netguard.Policy{AllowPrivate: true},
		Signer:       signer(t),
		UserAgent:    "compute-server/test",
	}
}

// start runs a deliverer until the test ends.
func start(t *testing.T, s store.Store, cfg webhook.Config) *webhook.Deliverer {
	t.Helper()
	d := webhook.New(cfg, s, testdb.Logger(t))
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	return d
}

// TestRetriesUntilDelivered: a receiver that fails twice and then
// succeeds gets the event three times with the same webhook-id, each
// signed; the delivery ends delivered with three recorded attempts, spaced
// by the backoff, and is not sent again.
func TestRetriesUntilDelivered(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, s store.Store) {
		rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
			if n <= 2 {
				http.Error(w, fmt.Sprintf("failure %d", n), http.StatusInternalServerError)
				return
			}
			fmt.Fprint(w, "thanks")
		})
		id := hook(t, s, rc.srv.URL+"/hook?token=abc")
		start(t, s, testConfig(t))
		d := waitDelivery(t, s, id)
		time.Sleep(500 * time.Millisecond) // ten poll intervals: nothing more may come
		reqs := rc.requests()
		if len(reqs) != 3 {
			t.Fatalf("receiver got %d requests, want 3", len(reqs))
		}
		evs, err := s.ListEvents(context.Background(), store.EventFilter{TaskID: id, Scope: store.AdminScope})
		if err != nil || len(evs) != 1 {
			t.Fatalf("events = %v, %v", evs, err)
		}
		for i, r := range reqs {
			if got := r.header.Get("webhook-id"); got != fmt.Sprint(evs[0].ID) {
				t.Errorf("request %d webhook-id = %q, want the event id %d", i+1, got, evs[0].ID)
			}
			var body event.Body
			if err := json.Unmarshal(r.body, &body); err != nil || body.TaskID != id || body.Status != task.StatusPending ||
				body.EventType != "echo_status_update" {
				t.Errorf("request %d body = %s (%v)", i+1, r.body, err)
			}
		}
		// Retry 1 waits at least RetryMin, retry 2 at least twice that.
		if gap := reqs[1].at.Sub(reqs[0].at); gap < 50*time.Millisecond {
			t.Errorf("first retry came %s after the first attempt, want at least 50ms", gap)
		}
		if gap := reqs[2].at.Sub(reqs[1].at); gap < 100*time.Millisecond {
			t.Errorf("second retry came %s after the first, want at least 100ms", gap)
		}
		if d.Status != store.DeliveryDelivered || d.Attempts != 3 || d.LastStatusCode != 200 || d.DeliveredAt == nil || d.LastError != "" {
			t.Errorf("delivery = %+v", d)
		}
		if len(d.AttemptLog) != 3 {
			t.Fatalf("attempts = %+v, want 3", d.AttemptLog)
		}
		for i, a := range d.AttemptLog {
			want := []int{500, 500, 200}[i]
			if a.Attempt != i+1 || a.StatusCode != want || a.Duration <= 0 || a.StartedAt.IsZero() || a.Error != "" {
				t.Errorf("attempt %d = %+v, want status %d", i+1, a, want)
			}
		}
		if s := d.AttemptLog[0].ResponseSnippet; s != "failure 1\n" {
			t.Errorf("first snippet = %q", s)
		}
		if s := d.AttemptLog[2].ResponseSnippet; s != "thanks" {
			t.Errorf("last snippet = %q", s)
		}
	})
}

// TestGoneStops: 410 Gone stops the delivery after one attempt.
func TestGoneStops(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, s store.Store) {
		rc := newReceiver(t, status(http.StatusGone))
		id := hook(t, s, rc.srv.URL)
		start(t, s, testConfig(t))
		d := waitDelivery(t, s, id)
		time.Sleep(300 * time.Millisecond)
		if n := len(rc.requests()); n != 1 {
			t.Errorf("receiver got %d requests, want 1", n)
		}
		if d.Status != store.DeliveryStopped || d.Attempts != 1 || len(d.AttemptLog) != 1 || d.AttemptLog[0].StatusCode != 410 {
			t.Errorf("delivery = %+v", d)
		}
	})
}

// TestDestinationPolicy: under the default policy a loopback receiver is
// refused at connect time and the delivery fails at once with the policy's
// reason; an allowed CIDR lets the same receiver through.
func TestDestinationPolicy(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, s store.Store) {
		rc := newReceiver(t, status(http.StatusNoContent))
		refused := hook(t, s, rc.srv.URL)
		cfg := testConfig(t)
		cfg.Policy = netguard.Policy{}
		d := webhook.New(cfg, s, testdb.Logger(t))
		if err := d.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		got := waitDelivery(t, s, refused)
		d.Stop()
		if n := len(rc.requests()); n != 0 {
			t.Errorf("a refused destination got %d requests", n)
		}
		if got.Status != store.DeliveryFailed || got.Attempts != 1 || len(got.AttemptLog) != 1 {
			t.Fatalf("refused delivery = %+v", got)
		}
		a := got.AttemptLog[0]
		if a.StatusCode != 0 || !strings.Contains(a.Error, "forbidden destination") || !strings.Contains(a.Error, "loopback") ||
			!strings.Contains(a.Error, "COMPUTE_WEBHOOK_ALLOW_PRIVATE") || strings.Contains(a.Error, "http://") {
			t.Errorf("refusal recorded as %+v; want the policy's reason naming COMPUTE_WEBHOOK_ALLOW_PRIVATE, without the URL", a)
		}
		if got.LastError != a.Error {
			t.Errorf("last_error = %q, want the attempt's error", got.LastError)
		}

		allowed := hook(t, s, rc.srv.URL)
		cfg.Policy = netguard.Policy{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
		start(t, s, cfg)
		if ok := waitDelivery(t, s, allowed); ok.Status != store.DeliveryDelivered || ok.LastStatusCode != 204 {
			t.Errorf("delivery to an allowed CIDR = %+v", ok)
		}
		if n := len(rc.requests()); n != 1 {
			t.Errorf("receiver got %d requests, want 1", n)
		}
	})
}

// TestSnippetAndLatency: the stored response snippet is the first KiB of
// the answer and the duration covers the receiver's delay.
func TestSnippetAndLatency(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, s store.Store) {
		rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
			time.Sleep(80 * time.Millisecond)
			fmt.Fprint(w, strings.Repeat("x", 5000))
		})
		id := hook(t, s, rc.srv.URL)
		start(t, s, testConfig(t))
		d := waitDelivery(t, s, id)
		if d.Status != store.DeliveryDelivered || len(d.AttemptLog) != 1 {
			t.Fatalf("delivery = %+v", d)
		}
		a := d.AttemptLog[0]
		if a.ResponseSnippet != strings.Repeat("x", 1024) {
			t.Errorf("snippet has %d bytes, want the first 1024", len(a.ResponseSnippet))
		}
		if a.Duration < 80*time.Millisecond || a.Duration > waitLimit {
			t.Errorf("duration = %s, want at least the receiver's 80ms", a.Duration)
		}
	})
}

// TestRedirectIsAFailedAttempt: a 3xx is an answer, not a destination to
// follow.
func TestRedirectIsAFailedAttempt(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, s store.Store) {
		target := newReceiver(t, status(http.StatusOK))
		rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, target.srv.URL, http.StatusTemporaryRedirect)
		})
		id := hook(t, s, rc.srv.URL)
		cfg := testConfig(t)
		cfg.MaxAttempts = 1
		start(t, s, cfg)
		d := waitDelivery(t, s, id)
		if d.Status != store.DeliveryFailed || d.LastStatusCode != http.StatusTemporaryRedirect || len(d.AttemptLog) != 1 {
			t.Errorf("delivery = %+v", d)
		}
		if n := len(target.requests()); n != 0 {
			t.Errorf("the redirect was followed: its target got %d requests", n)
		}
	})
}

// TestMaxAttempts: a receiver that always fails gets MaxAttempts
// requests, then the delivery fails.
func TestMaxAttempts(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, s store.Store) {
		rc := newReceiver(t, status(http.StatusServiceUnavailable))
		id := hook(t, s, rc.srv.URL)
		cfg := testConfig(t)
		cfg.MaxAttempts = 2
		start(t, s, cfg)
		d := waitDelivery(t, s, id)
		time.Sleep(300 * time.Millisecond)
		if n := len(rc.requests()); n != 2 {
			t.Errorf("receiver got %d requests, want 2", n)
		}
		if d.Status != store.DeliveryFailed || d.Attempts != 2 || len(d.AttemptLog) != 2 || d.LastStatusCode != 503 {
			t.Errorf("delivery = %+v", d)
		}
	})
}

// TestLostAttemptsSpendTheBudget: when earlier claims ended without a
// record (their senders died) and the budget is spent, the next claim
// fails the delivery without sending it.
func TestLostAttemptsSpendTheBudget(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, s store.Store) {
		rc := newReceiver(t, status(http.StatusOK))
		id := hook(t, s, rc.srv.URL)
		for range 2 { // two senders claim it and die
			if ds, err := s.ClaimDeliveries(context.Background(), store.DeliveryClaim{Limit: 1, Lease: time.Millisecond}); err != nil || len(ds) != 1 {
				t.Fatalf("claim = %v, %v", ds, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		cfg := testConfig(t)
		cfg.MaxAttempts = 2
		start(t, s, cfg)
		d := waitDelivery(t, s, id)
		if n := len(rc.requests()); n != 0 {
			t.Errorf("receiver got %d requests; the budget was spent", n)
		}
		if d.Status != store.DeliveryFailed || d.Attempts != 3 || len(d.AttemptLog) != 1 ||
			d.AttemptLog[0].Attempt != 3 || !strings.Contains(d.AttemptLog[0].Error, "not sent") {
			t.Errorf("delivery = %+v", d)
		}
	})
}

// TestUnsignedRequests: without a secret, requests still carry
// webhook-id and webhook-timestamp, and no signature.
func TestUnsignedRequests(t *testing.T) {
	t.Parallel()
	s := testdb.Open(t, "sqlite", newRegistry())
	rc := newReceiver(t, status(http.StatusOK))
	rc.unsigned = true
	id := hook(t, s, rc.srv.URL)
	cfg := testConfig(t)
	cfg.Signer = nil
	start(t, s, cfg)
	waitDelivery(t, s, id)
	h := rc.requests()[0].header
	if h.Get("webhook-id") == "" || h.Get("webhook-timestamp") == "" || h.Get("webhook-signature") != "" {
		t.Errorf("unsigned request headers = %v", h)
	}
}

// TestStopFinishesInFlightRequests: Stop waits for a request in flight
// and records it; a second Stop, and a Stop before Start, do nothing.
func TestStopFinishesInFlightRequests(t *testing.T) {
	t.Parallel()
	webhook.New(webhook.Config{}, nil, nil).Stop()
	s := testdb.Open(t, "sqlite", newRegistry())
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		time.Sleep(300 * time.Millisecond)
		w.WriteHeader(http.StatusOK)
	})
	id := hook(t, s, rc.srv.URL)
	d := webhook.New(testConfig(t), s, testdb.Logger(t))
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(context.Background()); err == nil {
		t.Error("a second Start succeeded")
	}
	rc.wait(1)
	d.Stop()
	if got := delivery(t, s, id); got.Status != store.DeliveryDelivered || len(got.AttemptLog) != 1 {
		t.Errorf("after Stop the delivery is %+v; want the request in flight finished and recorded", got)
	}
	d.Stop()
}

// The sender child: its lease and request timeout.
const (
	childLease   = 3 * time.Second
	childTimeout = 2 * time.Second
)

// runSender is the child process of TestKilledMidDeliveryIsDeliveredAfterRestart:
// a real deliverer on the test's database that runs until it is killed
// (or, as a bound, for a minute).
func runSender(dsn string) {
	log := testLogger()
	s, err := sqlstore.Open(context.Background(), dsn, newRegistry(), log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sender:", err)
		os.Exit(2)
	}
	sg, _ := webhook.NewSigner(secret)
	d := webhook.New(webhook.Config{
		PollInterval: 20 * time.Millisecond, Lease: childLease, Timeout: childTimeout,
		Policy: netguard.Policy{AllowPrivate: true}, Signer: sg, UserAgent: "compute-server/child",
	}, s, log)
	if err := d.Start(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "sender:", err)
		os.Exit(2)
	}
	time.Sleep(time.Minute)
	os.Exit(3)
}

// TestKilledMidDeliveryIsDeliveredAfterRestart: a sender process claims a
// delivery whose receiver hangs and is killed with SIGKILL mid-request;
// nothing is recorded, and a fresh deliverer sends the event again, with
// the same webhook-id, once the dead sender's lease has passed.
func TestKilledMidDeliveryIsDeliveredAfterRestart(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			dsn := testdb.URL(t, dialect)
			s, err := sqlstore.Open(context.Background(), dsn, newRegistry(), testdb.Logger(t),
				sqlstore.WithWebhookTargets(webhook.Targeting{}.Targets))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			if err := s.Migrate(context.Background()); err != nil {
				t.Fatal(err)
			}
			release := make(chan struct{})
			rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 { // hang until the sender is gone
					select {
					case <-r.Context().Done():
					case <-release:
					}
					return
				}
				w.WriteHeader(http.StatusOK)
			})
			defer close(release)
			id := hook(t, s, rc.srv.URL)

			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), childEnv+"="+dsn)
			cmd.Stdout, cmd.Stderr = testWriter{t}, testWriter{t}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
			select {
			case <-rc.got:
			case err := <-exited:
				t.Fatalf("the sender exited before sending: %v", err)
			case <-time.After(waitLimit):
				t.Fatal("the sender sent nothing")
			}
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			if err := <-exited; err == nil || !strings.Contains(err.Error(), "killed") {
				t.Fatalf("sender exit = %v, want killed", err)
			}
			exited <- nil // for the cleanup

			claimed := delivery(t, s, id)
			if claimed.Status != store.DeliveryPending || claimed.Attempts != 1 || len(claimed.AttemptLog) != 0 {
				t.Fatalf("after the kill the delivery is %+v; want pending, claimed once, nothing recorded", claimed)
			}
			leaseEnd := claimed.NextAttemptAt

			cfg := testConfig(t)
			cfg.Lease = 2 * time.Second
			cfg.Timeout = time.Second
			start(t, s, cfg)
			d := waitDelivery(t, s, id)
			reqs := rc.requests()
			if len(reqs) != 2 {
				t.Fatalf("receiver got %d requests, want 2", len(reqs))
			}
			if reqs[1].at.Before(leaseEnd.Add(-time.Millisecond)) {
				t.Errorf("sent again at %s, before the dead sender's lease ended at %s", reqs[1].at, leaseEnd)
			}
			if a, b := reqs[0].header.Get("webhook-id"), reqs[1].header.Get("webhook-id"); a == "" || a != b {
				t.Errorf("webhook-id %q then %q, want the same", a, b)
			}
			if string(reqs[0].body) != string(reqs[1].body) {
				t.Errorf("bodies differ:\n%s\n%s", reqs[0].body, reqs[1].body)
			}
			if d.Status != store.DeliveryDelivered || d.Attempts != 2 || len(d.AttemptLog) != 1 ||
				d.AttemptLog[0].Attempt != 2 || d.AttemptLog[0].StatusCode != 200 {
				t.Errorf("delivery = %+v; want delivered by attempt 2, attempt 1 lost with its sender", d)
			}
		})
	}
}

// testWriter sends a child's output to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// testLogger is the child's logger: text on stderr, which the parent test
// logs.
func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
