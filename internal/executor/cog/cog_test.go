package cog_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/cog"
	"github.com/computeserver/compute/internal/executor/cog/cogfake"
	"github.com/computeserver/compute/internal/executor/executortest"
	"github.com/computeserver/compute/internal/executor/internal/hosted/hostedtest"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

const webhookToken = "cog-webhook-secret"

// service is a Cog container fake behind a hostedtest.Front, plus our
// callback route (the API process, which outlives a worker's restart) on
// its own server.
type service struct {
	fake      *cogfake.Fake
	front     *hostedtest.Front
	url       string
	jobs      hostedtest.Behaviours
	callbacks *cog.Callbacks
	api       string
	// inbox, when set, is the task store the callbacks keep their inboxes
	// in: each executor then stands for a worker process of its own, with
	// callbacks of its own over the same store. Otherwise every executor
	// shares the API's in-memory callbacks (one process).
	inbox store.Inbox
}

var cancelPath = regexp.MustCompile(`^/predictions/([^/]+)/cancel$`)

func newService(t *testing.T, cfg cogfake.Config) *service {
	t.Helper()
	return newServiceOn(t, cfg, nil)
}

// newSharedService is newService whose callbacks keep their inboxes in a
// new SQLite task store: the API and each executor are processes of
// their own.
func newSharedService(t *testing.T, cfg cogfake.Config) *service {
	t.Helper()
	return newServiceOn(t, cfg, testdb.Open(t, "sqlite", registry.New()))
}

func newServiceOn(t *testing.T, cfg cogfake.Config, inbox store.Inbox) *service {
	t.Helper()
	s := &service{callbacks: cog.NewCallbacks(), inbox: inbox}
	if inbox != nil {
		s.callbacks = cog.NewSharedCallbacks(inbox)
	}
	if cfg.Outcome == nil {
		cfg.Outcome = s.outcome
	}
	if cfg.WebhookThrottle == 0 {
		cfg.WebhookThrottle = time.Millisecond
	}
	cfg.WebhookAuthToken = webhookToken
	s.fake = cogfake.New(cfg)
	t.Cleanup(s.fake.Close)
	if cfg.SetupTime == 0 {
		// Setup ends at once, but in the fake's own goroutine: a PUT
		// before it would be answered 503 (§3.2), as a real container's.
		if err := s.fake.WaitHealth(ctx(t), cogfake.HealthReady); err != nil {
			t.Fatal(err)
		}
	}
	s.front = hostedtest.Serve(t, s.fake, &s.jobs, func(r *http.Request) (string, bool) {
		m := cancelPath.FindStringSubmatch(r.URL.Path)
		if m == nil {
			return "", false
		}
		return m[1], true
	}, nil)
	mux := http.NewServeMux()
	mux.Handle("POST "+cog.CallbackPath+"{token}", s.callbacks)
	api := httptest.NewServer(mux)
	t.Cleanup(api.Close)
	s.url, s.api = s.front.URL, api.URL
	return s
}

// outcome ends a harness job as its behaviour asks.
func (s *service) outcome(r cogfake.Request) cogfake.Outcome {
	b := s.jobs.Of(r.Body)
	if b.Hold != nil {
		s.jobs.Hold(b.Hold, r.ID)
	}
	if b.Fail == executor.ProviderError {
		return cogfake.Outcome{Error: "RuntimeError: CUDA error: out of memory"}
	}
	return cogfake.Outcome{}
}

func (s *service) executor(t *testing.T, timeout string) *cog.Executor {
	t.Helper()
	set := cog.Settings{URL: s.url, WebhookAuthToken: webhookToken, CallbackTimeout: timeout}
	callbacks := s.callbacks
	if s.inbox != nil {
		callbacks = cog.NewSharedCallbacks(s.inbox)
	}
	ex, err := cog.New("cog-test", set, nil, callbacks, s.api)
	if err != nil {
		t.Fatal(err)
	}
	return ex
}

func TestHarness(t *testing.T) {
	t.Parallel()
	for name, newS := range map[string]func(*testing.T, cogfake.Config) *service{"memory": newService, "store": newSharedService} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			harness(t, newS(t, cogfake.Config{RunTime: 30 * time.Millisecond, LogLines: 2, RequiredInputs: []string{"seed"}}))
		})
	}
}

func harness(t *testing.T, s *service) {
	executortest.Run(t, executortest.Adapter{
		New: func(t *testing.T) executor.Executor { return s.executor(t, "") },
		Job: func(t *testing.T, b executortest.Behaviour) *executor.Job {
			if b.Fail == executor.InvalidInput {
				return s.jobs.Job(t, b, map[string]any{"seed": nil}) // §3.2: 422 for a missing input
			}
			return s.jobs.Job(t, b, nil)
		},
		Failures:        []executor.Category{executor.ProviderError, executor.InvalidInput},
		SurvivesRestart: true,
		Submissions:     func() int { return len(s.fake.Requests()) },
		SetAvailable:    s.front.SetAvailable,
	})
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// TestHandleSavedBeforeThePut: the prediction id is ours (§3.2 PUT), so the
// handle is saved before the container hears of the job; the PUT asks for
// an async answer and a webhook to our callback route with a token.
func TestHandleSavedBeforeThePut(t *testing.T) {
	t.Parallel()
	s := newService(t, cogfake.Config{RunTime: 30 * time.Millisecond})
	ex := s.executor(t, "")
	st := &hostedtest.Store{}
	j := st.Prepare(s.jobs.Job(t, executortest.Behaviour{}, nil))
	var saved []executor.Handle
	var putsAtSave []int
	j.SaveHandle = func(_ context.Context, h executor.Handle) error {
		saved = append(saved, h)
		putsAtSave = append(putsAtSave, len(s.fake.Requests()))
		return nil
	}
	out, err := executor.Execute(ctx(t), ex, j, hostedtest.Discard())
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	if len(saved) == 0 || putsAtSave[0] != 0 {
		t.Fatalf("handle saves %v after %v PUTs, want the first before any", saved, putsAtSave)
	}
	reqs := s.fake.Requests()
	if len(reqs) != 1 || reqs[0].Method != http.MethodPut || reqs[0].ID != saved[0].ExternalID {
		t.Fatalf("requests %+v, want one PUT of prediction %s", reqs, saved[0].ExternalID)
	}
	if got := reqs[0].Header.Get("Prefer"); got != "respond-async" {
		t.Errorf("Prefer %q", got)
	}
	if !strings.Contains(string(reqs[0].Body), `"webhook":"`+s.api+cog.CallbackPath) {
		t.Errorf("PUT body %s does not name our callback route", reqs[0].Body)
	}
	if len(out.Artifacts) != 1 || out.Artifacts[0].Width != 64 || out.Artifacts[0].Height != 48 {
		t.Errorf("artifacts %+v, want one 64×48 image from the data URL", out.Artifacts)
	}
	// metrics.predict_time of the finished prediction.
	if u := out.Usage; u.ProviderSeconds < 0.03 || u.ProviderSeconds > 60 {
		t.Errorf("Output.Usage %+v, want the prediction's predict_time (at least the 30 ms it ran)", u)
	}
}

// TestCallbackRefused: a webhook for a token no job expects is refused
// (404), one without the container's WEBHOOK_AUTH_TOKEN too (401, §3.2);
// a forged "succeeded" does not end the run.
func TestCallbackRefused(t *testing.T) {
	t.Parallel()
	s := newService(t, cogfake.Config{})
	ex := s.executor(t, "")
	st := &hostedtest.Store{}
	gate := executortest.NewGate()
	t.Cleanup(gate.Release)
	j := st.Prepare(s.jobs.Job(t, executortest.Behaviour{Hold: gate}, nil))
	h, err := ex.Start(ctx(t), j)
	if err != nil {
		t.Fatal(err)
	}
	webhook := ""
	for _, r := range s.fake.Requests() {
		webhook = regexp.MustCompile(`"webhook":"([^"]+)"`).FindStringSubmatch(string(r.Body))[1]
	}
	post := func(url, auth string) int {
		req, _ := http.NewRequestWithContext(ctx(t), http.MethodPost, url, strings.NewReader(`{"id":"`+h.ExternalID+`","status":"succeeded","output":[]}`))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	wrongToken := webhook[:len(webhook)-4] + "0000"
	if webhook[len(webhook)-4:] == "0000" {
		wrongToken = webhook[:len(webhook)-4] + "1111"
	}
	if code := post(wrongToken, "Bearer "+webhookToken); code != http.StatusNotFound {
		t.Errorf("a wrong token: %d, want 404", code)
	}
	if code := post(webhook, ""); code != http.StatusUnauthorized {
		t.Errorf("no bearer token: %d, want 401", code)
	}
	if code := post(webhook, "Bearer nope"); code != http.StatusUnauthorized {
		t.Errorf("a wrong bearer token: %d, want 401", code)
	}
	done := make(chan error, 1)
	go func() {
		_, err := ex.Wait(ctx(t), j, h, hostedtest.Discard())
		done <- err
	}()
	gate.Release()
	if err := <-done; err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if _, ok := st.File("output-0.png"); !ok {
		t.Error("the real output was not stored")
	}
}

// TestReconcileLostCallback: the container finished but its terminal
// webhook never came (§3.2 "a missed terminal webhook loses the result");
// after the callback timeout the run finds the container idle: lost, and
// retried afresh by the engine.
func TestReconcileLostCallback(t *testing.T) {
	t.Parallel()
	s := newService(t, cogfake.Config{DropCompleted: true})
	ex := s.executor(t, "100ms")
	_, err := executor.Execute(ctx(t), ex, (&hostedtest.Store{}).Prepare(s.jobs.Job(t, executortest.Behaviour{}, nil)), hostedtest.Discard())
	if !executor.Is(err, executor.Lost) || !executor.CategoryOf(err).Retryable() {
		t.Fatalf("Execute: %v, want a retryable lost error", err)
	}
	if n := len(s.fake.Requests()); n != 1 {
		t.Errorf("%d requests; an idle container must not get the PUT again (it would start a new run)", n)
	}
}

// TestReconcileStillRunning: no webhook for the callback timeout while the
// container still runs the prediction: the same PUT re-attaches (202, no
// second run, §3.2 idempotent PUT) and the run completes.
func TestReconcileStillRunning(t *testing.T) {
	t.Parallel()
	// The prediction outlasts many callback timeouts, even on a starved
	// machine whose timers fire late.
	s := newService(t, cogfake.Config{RunTime: 1500 * time.Millisecond})
	ex := s.executor(t, "60ms")
	if _, err := executor.Execute(ctx(t), ex, (&hostedtest.Store{}).Prepare(s.jobs.Job(t, executortest.Behaviour{}, nil)), hostedtest.Discard()); err != nil {
		t.Fatalf("Execute: %v", err)
	}
	reqs := s.fake.Requests()
	if len(reqs) < 2 {
		t.Fatalf("%d requests, want the PUT and at least one reconciling PUT", len(reqs))
	}
	for _, r := range reqs[1:] {
		if r.ID != reqs[0].ID || r.Code != http.StatusAccepted {
			t.Errorf("reconciling request %s %s answered %d, want a 202 PUT of %s", r.Method, r.ID, r.Code, reqs[0].ID)
		}
	}
}

// TestRestartedContainerLost: a container restart forgets what was in
// flight without a webhook (§3.3 knob); the run's reconcile finds it
// starting again: lost.
func TestRestartedContainerLost(t *testing.T) {
	t.Parallel()
	s := newService(t, cogfake.Config{RunTime: cogfake.Forever, SetupTime: cogfake.Forever})
	s.fake.FinishSetup()
	if err := s.fake.WaitHealth(ctx(t), cogfake.HealthReady); err != nil {
		t.Fatal(err)
	}
	ex := s.executor(t, "50ms")
	st := &hostedtest.Store{}
	j := st.Prepare(s.jobs.Job(t, executortest.Behaviour{}, nil))
	h, err := ex.Start(ctx(t), j)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.fake.WaitStatus(ctx(t), h.ExternalID, cogfake.StatusProcessing); err != nil {
		t.Fatal(err)
	}
	s.fake.Restart()
	if _, err := ex.Wait(ctx(t), j, h, hostedtest.Discard()); !executor.Is(err, executor.Lost) {
		t.Fatalf("Wait: %v, want lost", err)
	}
	if err := ex.Ping(ctx(t)); !executor.Is(err, executor.ProviderUnavailable) {
		t.Errorf("Ping while the container starts: %v", err)
	}
}

// TestWebhookReachesAnotherProcess: the API process receiving the
// webhooks is not the worker process whose run waits; the run hears them
// through the store within its polls, long before its callback timeout.
// (With callbacks in memory the run would hear nothing for the hour.)
func TestWebhookReachesAnotherProcess(t *testing.T) {
	t.Parallel()
	s := newSharedService(t, cogfake.Config{RunTime: 200 * time.Millisecond, LogLines: 2})
	ex := s.executor(t, "1h")
	c, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := executor.Execute(c, ex, (&hostedtest.Store{}).Prepare(s.jobs.Job(t, executortest.Behaviour{}, nil)), hostedtest.Discard()); err != nil {
		t.Fatalf("Execute: %v", err)
	}
	t.Logf("done in %s", time.Since(start).Round(time.Millisecond))
	if n := len(s.fake.Requests()); n != 1 {
		t.Errorf("%d requests, want the one PUT (no reconcile)", n)
	}
}

// TestRestartedWorkerReadsWhatArrived: the worker waiting on a prediction
// stops; the prediction ends while no worker runs, its webhook received by
// the API process; a new worker process recovers the job and finds the
// end in the inbox, without the container running it again.
func TestRestartedWorkerReadsWhatArrived(t *testing.T) {
	t.Parallel()
	s := newSharedService(t, cogfake.Config{})
	gate := executortest.NewGate()
	t.Cleanup(gate.Release)
	st := &hostedtest.Store{}
	j := st.Prepare(s.jobs.Job(t, executortest.Behaviour{Hold: gate}, nil))
	first := s.executor(t, "1h")
	h, err := first.Start(ctx(t), j)
	if err != nil {
		t.Fatal(err)
	}
	waitCtx, stop := context.WithCancel(ctx(t))
	waited := make(chan error, 1)
	go func() {
		_, err := first.Wait(waitCtx, j, h, hostedtest.Discard())
		waited <- err
	}()
	if err := s.fake.WaitStatus(ctx(t), h.ExternalID, cogfake.StatusProcessing); err != nil {
		t.Fatal(err)
	}
	stop() // the worker process ends
	if err := <-waited; err == nil {
		t.Fatal("Wait returned no error when its context ended")
	}
	gate.Release()
	deadline := time.Now().Add(10 * time.Second)
	for !delivered(s.fake.Deliveries(), h.ExternalID) {
		if time.Now().After(deadline) {
			t.Fatal("the terminal webhook was never delivered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.fake.WaitHealth(ctx(t), cogfake.HealthReady); err != nil {
		t.Fatal(err)
	}
	second := s.executor(t, "1h") // a new process
	h2, err := second.Recover(ctx(t), j, h)
	if err != nil {
		t.Fatalf("Recover: %v (an idle container: the end must come from the inbox)", err)
	}
	out, err := second.Wait(ctx(t), j, h2, hostedtest.Discard())
	if err != nil || len(out.Artifacts) != 1 {
		t.Fatalf("Wait after recovery: %+v, %v", out, err)
	}
	if n := len(s.fake.Requests()); n != 1 {
		t.Errorf("%d requests, want the one PUT", n)
	}
}

// delivered reports whether the terminal webhook of prediction id was
// accepted.
func delivered(ds []cogfake.Delivery, id string) bool {
	for _, d := range ds {
		if d.ID == id && d.Status == cogfake.StatusSucceeded && d.Code == http.StatusOK {
			return true
		}
	}
	return false
}
