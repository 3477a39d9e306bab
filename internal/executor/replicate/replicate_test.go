package replicate_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/executortest"
	"github.com/computeserver/compute/internal/executor/internal/hosted/hostedtest"
	"github.com/computeserver/compute/internal/executor/replicate"
	"github.com/computeserver/compute/internal/executor/replicate/replicatefake"
	"github.com/computeserver/compute/internal/task"
)

const (
	token   = "r8_test_token"
	version = "5599ed30703defd1d160a25a63321b4dec97101d98b4674bcc56e41f62f35637"
)

// service is a Replicate fake behind a hostedtest.Front that can also
// answer creates with 429 as the API does over its rate limit.
type service struct {
	fake     *replicatefake.Fake
	front    *hostedtest.Front
	url      string
	throttle atomic.Int32 // creates still to answer 429 (harness rate_limited)
	jobs     hostedtest.Behaviours
}

var cancelPath = regexp.MustCompile(`^/v1/predictions/([^/]+)/cancel$`)

func newService(t *testing.T, cfg replicatefake.Config) *service {
	t.Helper()
	s := &service{}
	cfg.Token = token
	if cfg.Outcome == nil {
		cfg.Outcome = s.outcome
	}
	f, err := replicatefake.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.fake = f
	t.Cleanup(f.Close)
	s.front = hostedtest.Serve(t, f, &s.jobs, func(r *http.Request) (string, bool) {
		m := cancelPath.FindStringSubmatch(r.URL.Path)
		if m == nil || r.Method != http.MethodPost {
			return "", false
		}
		return m[1], true
	}, s.throttled)
	s.url = s.front.URL
	return s
}

// throttled answers a create with 429 while s.throttle says so, as §3.1
// Errors answers it.
func (s *service) throttled(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/predictions") || s.throttle.Add(-1) < 0 {
		return false
	}
	w.Header().Set("Retry-After", "7")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write([]byte(`{"detail":"Request was throttled. Your rate limit resets in ~7s.","status":429}`))
	return true
}

// outcome ends a harness job as its behaviour asks (§3.1 failed with an
// error string).
func (s *service) outcome(c replicatefake.Create) replicatefake.Outcome {
	b := s.jobs.Of(c.Body)
	if b.Hold != nil {
		s.jobs.Hold(b.Hold, c.ID) // a cancel already made the prediction canceled
	}
	switch b.Fail {
	case executor.InvalidInput:
		return replicatefake.Outcome{Error: "Prediction input failed validation: width must be a multiple of 16"}
	case executor.ProviderError:
		return replicatefake.Outcome{Error: "CUDA out of memory. Tried to allocate 2.00 GiB"}
	case executor.SafetyBlocked:
		return replicatefake.Outcome{Error: "NSFW content detected. Try running it again, or try a different prompt."}
	}
	return replicatefake.Outcome{}
}

func (s *service) executor(t *testing.T, model string) *replicate.Executor {
	t.Helper()
	set := replicate.Settings{Token: token}
	set.BaseURL = s.url
	set.Model = model
	set.PollInterval, set.PollMax = "2ms", "20ms"
	ex, err := replicate.New("replicate-test", set, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ex
}

func TestHarness(t *testing.T) {
	t.Parallel()
	s := newService(t, replicatefake.Config{RunTime: 30 * time.Millisecond, LogLines: 2})
	executortest.Run(t, executortest.Adapter{
		New: func(t *testing.T) executor.Executor { return s.executor(t, "black-forest-labs/flux-schnell") },
		Job: func(t *testing.T, b executortest.Behaviour) *executor.Job {
			if b.Fail == executor.RateLimited {
				s.throttle.Store(1)
			}
			return s.jobs.Job(t, b, nil)
		},
		Failures: []executor.Category{
			executor.ProviderError, executor.RateLimited, executor.InvalidInput, executor.SafetyBlocked,
		},
		SurvivesRestart: true,
		Submissions:     func() int { return len(s.fake.Creates()) },
		SetAvailable:    s.front.SetAvailable,
	})
}

func run(t *testing.T, ctx context.Context, ex executor.Executor, j *executor.Job) (*executor.Output, *hostedtest.Store, error) {
	t.Helper()
	st := &hostedtest.Store{}
	out, err := executor.Execute(ctx, ex, st.Prepare(j), hostedtest.Discard())
	return out, st, err
}

// TestRoutes: a model is created at /v1/models/{owner}/{name}/predictions,
// a version (bare or owner/name:VERSION) at /v1/predictions with the
// version in the body (§3.1 create); outputs are downloaded at once.
func TestRoutes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ model, path, version string }{
		{"black-forest-labs/flux-schnell", "/v1/models/black-forest-labs/flux-schnell/predictions", ""},
		{version, "/v1/predictions", version},
		{"stability-ai/sdxl:" + version, "/v1/predictions", version},
	} {
		t.Run(tc.model, func(t *testing.T) {
			t.Parallel()
			s := newService(t, replicatefake.Config{Retention: 2 * time.Second, RunTime: 30 * time.Millisecond})
			out, st, err := run(t, t.Context(), s.executor(t, tc.model), s.jobs.Job(t, executortest.Behaviour{}, nil))
			if err != nil {
				t.Fatalf("Execute: %v", err)
			}
			c := s.fake.Creates()[0]
			var body struct {
				Version string         `json:"version"`
				Input   map[string]any `json:"input"`
			}
			_ = json.Unmarshal(c.Body, &body)
			if c.Path != tc.path || body.Version != tc.version {
				t.Errorf("created at %s with version %q, want %s and %q", c.Path, body.Version, tc.path, tc.version)
			}
			if body.Input["width"] != 64.0 || body.Input["seed"] != 7.0 {
				t.Errorf("input %v", body.Input)
			}
			if len(out.Artifacts) != 1 || out.Artifacts[0].Width != 64 || out.Artifacts[0].Height != 48 {
				t.Errorf("artifacts %+v, want one 64×48 image", out.Artifacts)
			}
			if data, ok := st.File("output-0.png"); !ok || string(data[1:4]) != "PNG" {
				t.Errorf("output-0.png not stored")
			}
			// metrics.predict_time: the fake's run time, without queueing.
			if u := out.Usage; u.ProviderSeconds < 0.03 || u.ProviderSeconds > 60 || u.InputTokens != 0 {
				t.Errorf("Output.Usage %+v, want the prediction's predict_time (at least the 30 ms it ran)", u)
			}
		})
	}
}

// TestCancelAfter: the run's deadline is sent as Cancel-After (§3.1); a
// prediction Replicate aborted at it, because it never started, fails as
// timeout — seen here by a recovered run that outlived the deadline.
func TestCancelAfter(t *testing.T) {
	t.Parallel()
	s := newService(t, replicatefake.Config{StartTime: replicatefake.Forever})
	ex := s.executor(t, "black-forest-labs/flux-schnell")
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	st := &hostedtest.Store{}
	j := st.Prepare(s.jobs.Job(t, executortest.Behaviour{}, nil))
	h, err := ex.Start(ctx, j)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if got := s.fake.Creates()[0].Header.Get("Cancel-After"); got != "2s" {
		t.Errorf("Cancel-After %q, want 2s", got)
	}
	_, err = ex.Wait(t.Context(), j, h, hostedtest.Discard())
	if !executor.Is(err, executor.Timeout) || !task.IsPermanent(err) {
		t.Fatalf("Wait: %v, want a permanent timeout", err)
	}
	if got := s.fake.Status(h.ExternalID); got != replicatefake.StatusAborted {
		t.Errorf("prediction %s, want aborted", got)
	}
}

// TestRetryAfterHonoured: a create over the rate limit answers 429 with
// Retry-After (§3.1 Errors); the task is retried no sooner.
func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	s := newService(t, replicatefake.Config{CreateLimit: 1, CreateWindow: time.Minute, RunTime: replicatefake.Forever})
	ex := s.executor(t, "black-forest-labs/flux-schnell")
	st := &hostedtest.Store{}
	if _, err := ex.Start(t.Context(), st.Prepare(s.jobs.Job(t, executortest.Behaviour{}, nil))); err != nil {
		t.Fatalf("first Start: %v", err)
	}
	_, _, err := run(t, t.Context(), ex, s.jobs.Job(t, executortest.Behaviour{}, nil))
	var ra *task.RetryAfterError
	if !executor.Is(err, executor.RateLimited) || !errors.As(err, &ra) {
		t.Fatalf("second job: %v, want rate_limited with a retry delay", err)
	}
	if ra.After < 50*time.Second || ra.After > time.Minute {
		t.Errorf("retry after %v, want the fake's Retry-After (about 60s)", ra.After)
	}
}

// TestDataRemovedIsLost: a prediction whose outputs Replicate already
// removed (§3.1 Retention, data_removed) cannot be collected: lost.
func TestDataRemovedIsLost(t *testing.T) {
	t.Parallel()
	s := newService(t, replicatefake.Config{Retention: time.Millisecond})
	ex := s.executor(t, "black-forest-labs/flux-schnell")
	st := &hostedtest.Store{}
	j := st.Prepare(s.jobs.Job(t, executortest.Behaviour{}, nil))
	h, err := ex.Start(t.Context(), j)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := s.fake.WaitStatus(ctx, h.ExternalID, replicatefake.StatusSucceeded); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // let the 1 ms retention pass: the state under test is "later"
	if _, err := ex.Wait(ctx, j, h, hostedtest.Discard()); !executor.Is(err, executor.Lost) {
		t.Fatalf("Wait: %v, want lost", err)
	}
}
