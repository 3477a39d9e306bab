package fal_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/executortest"
	"github.com/computeserver/compute/internal/executor/fal"
	"github.com/computeserver/compute/internal/executor/fal/falfake"
	"github.com/computeserver/compute/internal/executor/internal/hosted/hostedtest"
	"github.com/computeserver/compute/internal/task"
)

const key = "key-id:key-secret"

// service is a fal fake behind a hostedtest.Front.
type service struct {
	fake  *falfake.Fake
	front *hostedtest.Front
	url   string
	jobs  hostedtest.Behaviours
}

func newService(t *testing.T, cfg falfake.Config) *service {
	t.Helper()
	s := &service{}
	if cfg.Keys == nil {
		cfg.Keys = []string{key}
	}
	if cfg.Outcome == nil {
		cfg.Outcome = s.outcome
	}
	s.fake = falfake.New(cfg)
	t.Cleanup(s.fake.Close)
	s.front = hostedtest.Serve(t, s.fake, &s.jobs, func(r *http.Request) (string, bool) {
		if r.Method != http.MethodPut || !strings.HasSuffix(r.URL.Path, "/cancel") {
			return "", false
		}
		parts := strings.Split(strings.TrimSuffix(r.URL.Path, "/cancel"), "/")
		return parts[len(parts)-1], true
	}, nil)
	s.url = s.front.URL
	return s
}

// outcome ends a harness job as its behaviour asks (§2.2 errors at the
// result; §2.5 has_nsfw_concepts).
func (s *service) outcome(sub falfake.Submission) falfake.Outcome {
	b := s.jobs.Of(sub.Input)
	if b.Hold != nil && s.jobs.Hold(b.Hold, sub.ID) {
		return falfake.Outcome{Status: http.StatusBadRequest, Detail: "Request was cancelled"}
	}
	switch b.Fail {
	case executor.InvalidInput:
		return falfake.Outcome{Status: http.StatusUnprocessableEntity, Detail: []map[string]any{{"loc": []string{"body", "prompt"}, "msg": "too long", "type": "value_error"}}}
	case executor.ProviderError:
		return falfake.Outcome{Status: http.StatusInternalServerError, Detail: "CUDA error: an illegal memory access was encountered"}
	case executor.SafetyBlocked:
		return falfake.Outcome{Output: map[string]any{"images": []any{}, "has_nsfw_concepts": []bool{true}}}
	}
	return falfake.DefaultOutcome(sub)
}

func (s *service) executor(t *testing.T, mod func(*fal.Settings)) *fal.Executor {
	t.Helper()
	set := fal.Settings{Key: key}
	set.BaseURL = s.url
	set.StorageURL, set.CDNURL = s.url, s.url
	set.Model = "fal-ai/flux/dev"
	set.PollInterval, set.PollMax = "2ms", "20ms"
	if mod != nil {
		mod(&set)
	}
	ex, err := fal.New("fal-test", set, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ex
}

func TestHarness(t *testing.T) {
	t.Parallel()
	s := newService(t, falfake.Config{Runners: 1, RunTime: 30 * time.Millisecond, LogLines: 2})
	executortest.Run(t, executortest.Adapter{
		New: func(t *testing.T) executor.Executor { return s.executor(t, nil) },
		Job: func(t *testing.T, b executortest.Behaviour) *executor.Job {
			switch b.Fail {
			case executor.RateLimited:
				s.fake.FailNext(1, http.StatusTooManyRequests)
			case executor.ProviderUnavailable:
				s.fake.FailNext(1, http.StatusServiceUnavailable)
			}
			return s.jobs.Job(t, b, nil)
		},
		Failures: []executor.Category{
			executor.ProviderUnavailable, executor.ProviderError, executor.RateLimited,
			executor.InvalidInput, executor.SafetyBlocked,
		},
		CanQueue:        true,
		SurvivesRestart: true,
		Submissions:     func() int { return len(s.fake.Submissions()) },
		SetAvailable:    s.front.SetAvailable,
	})
}

// run executes a job of fields on ex, storing into a new store.
func run(t *testing.T, ex executor.Executor, j *executor.Job) (*executor.Output, *hostedtest.Store, error) {
	t.Helper()
	st := &hostedtest.Store{}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	out, err := executor.Execute(ctx, ex, st.Prepare(j), hostedtest.Discard())
	return out, st, err
}

// TestPollsThrough202WhileRunning: status answers 202 while the request
// is queued or running (§2.2); the executor keeps polling, then fetches
// the result and downloads the image at once, before fal's media URL
// expires (§2.3, media expiration).
func TestPollsThrough202WhileRunning(t *testing.T) {
	t.Parallel()
	s := newService(t, falfake.Config{QueueTime: 20 * time.Millisecond, RunTime: 60 * time.Millisecond, LogLines: 3, MediaTTL: 2 * time.Second})
	ex := s.executor(t, nil)
	out, st, err := run(t, ex, s.jobs.Job(t, executortest.Behaviour{}, nil))
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	subs := s.fake.Submissions()
	if len(subs) != 1 {
		t.Fatalf("%d submissions, want 1", len(subs))
	}
	if n := s.fake.Polls(subs[0].ID); n < 2 {
		t.Errorf("%d status polls, want several while the request was queued and running", n)
	}
	if len(out.Artifacts) != 1 || out.Artifacts[0].Width != 64 || out.Artifacts[0].Height != 48 {
		t.Fatalf("artifacts %+v, want one 64×48 image", out.Artifacts)
	}
	data, ok := st.File("output-0.png")
	if !ok || len(data) == 0 || string(data[1:4]) != "PNG" {
		t.Fatalf("stored output-0.png: %d bytes, ok %v", len(data), ok)
	}
	if got := out.Data["request_id"]; got != subs[0].ID {
		t.Errorf("data request_id %v, want %s", got, subs[0].ID)
	}
	// COMPLETED's metrics.inference_time: the fake's run time, without the
	// queue time.
	if u := out.Usage; u.ProviderSeconds < 0.06 || u.ProviderSeconds >= 0.08+60 || u.InputTokens != 0 {
		t.Errorf("Output.Usage %+v, want the request's inference_time (at least the 60 ms it ran)", u)
	}
}

// TestSubmitInput: a generation task's fields become fal's input (§2.5):
// image_size from width and height, loras from the LoRA slots, the
// settings' fixed input over them, our internal fields dropped; the
// status is polled at the app's URL without the subpath (§2.1).
func TestSubmitInput(t *testing.T) {
	t.Parallel()
	s := newService(t, falfake.Config{})
	ex := s.executor(t, func(set *fal.Settings) { set.Input = map[string]any{"output_format": "png"} })
	j := s.jobs.Job(t, executortest.Behaviour{}, map[string]any{
		"subject_model_path": "https://example.com/subject.safetensors", "subject_lora_weight": 0.7,
		"workflow_id": "wf-1", "negative_prompt": nil,
	})
	if _, _, err := run(t, ex, j); err != nil {
		t.Fatalf("Execute: %v", err)
	}
	sub := s.fake.Submissions()[0]
	if sub.Model != "fal-ai/flux/dev" || sub.App != "fal-ai/flux" {
		t.Errorf("submitted to %s (app %s)", sub.Model, sub.App)
	}
	var in map[string]any
	if err := json.Unmarshal(sub.Input, &in); err != nil {
		t.Fatal(err)
	}
	size, _ := in["image_size"].(map[string]any)
	if size["width"] != 64.0 || size["height"] != 48.0 || in["width"] != nil {
		t.Errorf("image_size %v, width %v", in["image_size"], in["width"])
	}
	loras, _ := in["loras"].([]any)
	if len(loras) != 1 || loras[0].(map[string]any)["path"] != "https://example.com/subject.safetensors" || loras[0].(map[string]any)["scale"] != 0.7 {
		t.Errorf("loras %v", in["loras"])
	}
	if in["output_format"] != "png" || in["workflow_id"] != nil || in["seed"] != 7.0 {
		t.Errorf("input %v: want output_format png, seed 7, no workflow_id", in)
	}
	if auth := sub.Header.Get("Authorization"); auth != "Key "+key {
		t.Errorf("Authorization %q", auth)
	}
}

// TestStartTimeout: start_timeout_seconds is sent as X-Fal-Request-Timeout
// (§2.3), and a request that did not start by then — fal answers its
// result 504 with X-Fal-Request-Timeout-Type: user — fails as
// start_timeout, not retried.
func TestStartTimeout(t *testing.T) {
	t.Parallel()
	s := newService(t, falfake.Config{QueueTime: falfake.Forever})
	ex := s.executor(t, nil)
	j := s.jobs.Job(t, executortest.Behaviour{}, nil)
	j.StartBy = time.Now().Add(1900 * time.Millisecond)
	_, _, err := run(t, ex, j)
	if !executor.Is(err, executor.StartTimeout) || !task.IsPermanent(err) {
		t.Fatalf("Execute: %v, want a permanent start_timeout error", err)
	}
	subs := s.fake.Submissions()
	if len(subs) != 1 {
		t.Fatalf("%d submissions, want 1", len(subs))
	}
	if got := subs[0].Header.Get("X-Fal-Request-Timeout"); got != "2" {
		t.Errorf("X-Fal-Request-Timeout %q, want 2", got)
	}

	j = s.jobs.Job(t, executortest.Behaviour{}, nil)
	j.StartBy = time.Now().Add(-time.Second)
	if _, _, err := run(t, ex, j); !executor.Is(err, executor.StartTimeout) {
		t.Errorf("a start deadline already passed: %v", err)
	}
	if n := len(s.fake.Submissions()); n != 1 {
		t.Errorf("%d submissions; a job past its start deadline must not be submitted", n)
	}
}

// TestRateLimitBacksOff: a 429 at submit (fal's per-key concurrency, §2.3
// retried by clients) is rate_limited with a retry delay, and nothing is
// waited on.
func TestRateLimitBacksOff(t *testing.T) {
	t.Parallel()
	s := newService(t, falfake.Config{MaxConcurrentPerKey: 1, QueueTime: falfake.Forever})
	ex := s.executor(t, nil)
	first := s.jobs.Job(t, executortest.Behaviour{}, nil)
	st := &hostedtest.Store{}
	if _, err := ex.Start(t.Context(), st.Prepare(first)); err != nil {
		t.Fatalf("first Start: %v", err)
	}
	_, _, err := run(t, ex, s.jobs.Job(t, executortest.Behaviour{}, nil))
	if !executor.Is(err, executor.RateLimited) || task.IsPermanent(err) {
		t.Fatalf("second job: %v, want a retryable rate_limited error", err)
	}
	var ra *task.RetryAfterError
	if !errors.As(err, &ra) || ra.After <= 0 {
		t.Errorf("error %v carries no retry delay", err)
	}
}

// TestLostRequest: a handle whose request fal does not know (its result
// retention is over, §2.2) is lost on recovery, so Execute submits afresh.
func TestLostRequest(t *testing.T) {
	t.Parallel()
	s := newService(t, falfake.Config{})
	ex := s.executor(t, nil)
	j := s.jobs.Job(t, executortest.Behaviour{}, nil)
	state, _ := json.Marshal(map[string]string{
		"status_url":   s.url + "/fal-ai/flux/requests/gone/status",
		"response_url": s.url + "/fal-ai/flux/requests/gone",
		"cancel_url":   s.url + "/fal-ai/flux/requests/gone/cancel",
	})
	h := executor.Handle{Executor: ex.Name(), ExternalID: "gone", Version: executor.HandleVersion, State: state}
	if _, err := ex.Recover(t.Context(), j, h); !executor.Is(err, executor.Lost) {
		t.Fatalf("Recover of an unknown request: %v, want lost", err)
	}
	j.Saved = &h
	if _, _, err := run(t, ex, j); err != nil {
		t.Fatalf("Execute after the request was lost: %v", err)
	}
	if n := len(s.fake.Submissions()); n != 1 {
		t.Errorf("%d submissions, want the one fresh start", n)
	}
}

// TestInputsHandedOver: an input at a loopback URL (our artifacts), which
// fal cannot fetch, is inlined as a data URI; a public URL is passed as
// it is; one over the inline limit is uploaded to fal's storage, or
// refused as invalid input when upload_inputs is never.
func TestInputsHandedOver(t *testing.T) {
	t.Parallel()
	s := newService(t, falfake.Config{})
	ex := s.executor(t, func(set *fal.Settings) { set.InlineInputMaxBytes = 16 })
	never := s.executor(t, func(set *fal.Settings) { set.InlineInputMaxBytes, set.UploadInputs = 16, "never" })
	read := func(_ context.Context, url string) ([]byte, error) {
		if strings.Contains(url, "big") {
			return make([]byte, 17), nil
		}
		return []byte("\x89PNG\r\n\x1a\nsmall"), nil
	}
	for _, tc := range []struct {
		name, url, want string
		fail            bool
	}{
		{"loopback artifact", "http://127.0.0.1:9000/api/v1/artifacts/a.png", "data:image/png;base64,iVBORw0KGgpzbWFsbA==", false},
		{"artifact path", "tasks/1/a.png", "data:image/png;base64,iVBORw0KGgpzbWFsbA==", false},
		{"public URL", "https://cdn.example.com/a.png", "https://cdn.example.com/a.png", false},
		{"over the limit", "http://localhost/big.png", "uploaded", false},
		{"over the limit, never uploaded", "http://localhost/big.png", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := s.jobs.Job(t, executortest.Behaviour{}, map[string]any{"reference_image_url": tc.url})
			j.OpenInput = read
			before := len(s.fake.Submissions())
			ex := ex
			if tc.fail {
				ex = never
			}
			_, _, err := run(t, ex, j)
			if tc.fail {
				if !executor.Is(err, executor.InvalidInput) || !strings.Contains(err.Error(), "inline") {
					t.Fatalf("Execute: %v, want invalid input naming the inline limit", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Execute: %v", err)
			}
			var in map[string]any
			_ = json.Unmarshal(s.fake.Submissions()[before].Input, &in)
			if tc.want == "uploaded" {
				got, _ := in["image_url"].(string)
				if data, ok := s.fake.Uploaded(got); !ok || !bytes.Equal(data, make([]byte, 17)) || !strings.HasPrefix(got, s.url+"/files/") {
					t.Errorf("image_url %q: uploaded %v %q, want the 17 bytes uploaded to the fake's storage", got, ok, data)
				}
				return
			}
			if in["image_url"] != tc.want {
				t.Errorf("image_url %.60v, want %.60v", in["image_url"], tc.want)
			}
		})
	}
}
