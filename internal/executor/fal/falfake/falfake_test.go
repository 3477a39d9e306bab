package falfake_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/computeserver/compute/internal/executor/fal/falfake"
	"github.com/computeserver/compute/internal/executor/internal/fakekit"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const key = "key-id:key-secret"

// do makes one request, with the fal key auth when not empty.
func do(t *testing.T, method, url, auth, body string, header ...string) fakekit.Call {
	t.Helper()
	if auth != "" {
		header = append(header, "Authorization", "Key "+auth)
	}
	return fakekit.Do(t, method, url, body, header...)
}

func start(t *testing.T, cfg falfake.Config) *falfake.Server {
	t.Helper()
	s := falfake.NewServer(cfg)
	t.Cleanup(s.Close)
	return s
}

// submit posts input to model and returns the submit body.
func submit(t *testing.T, s *falfake.Server, model, input string, header ...string) map[string]any {
	t.Helper()
	c := do(t, http.MethodPost, s.URL+"/"+model, key, input, header...)
	if c.Code != http.StatusOK {
		t.Fatalf("submit: %d %s", c.Code, c.Body)
	}
	return c.JSON(t)
}

func wait(t *testing.T, s *falfake.Server, id, status string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := s.WaitStatus(ctx, id, status); err != nil {
		t.Fatalf("request %s never reached %s (now %q): %v", id, status, s.Status(id), err)
	}
}

func TestAuthorization(t *testing.T) {
	t.Parallel()
	s := start(t, falfake.Config{Keys: []string{key}})
	for _, tc := range []struct {
		name, auth string
		want       int
	}{
		{"no header", "", http.StatusUnauthorized},
		{"unknown key", "other:key", http.StatusUnauthorized},
		{"configured key", key, http.StatusOK},
	} {
		c := do(t, http.MethodPost, s.URL+"/fal-ai/flux/dev", tc.auth, `{"prompt":"x"}`)
		if c.Code != tc.want {
			t.Errorf("%s: got %d %s, want %d", tc.name, c.Code, c.Body, tc.want)
		}
	}
	c := do(t, http.MethodPost, s.URL+"/fal-ai/flux/dev", "", `{}`, "Authorization", "Bearer "+key)
	if c.Code != http.StatusUnauthorized {
		t.Errorf("a Bearer token: got %d, want 401", c.Code)
	}
}

func TestSubmitURLsDropTheSubpath(t *testing.T) {
	t.Parallel()
	s := start(t, falfake.Config{QueueTime: falfake.Forever})
	sub := submit(t, s, "fal-ai/flux/dev", `{"prompt":"a cat"}`)
	id, _ := sub["request_id"].(string)
	base := s.URL + "/fal-ai/flux/requests/" + id
	want := map[string]any{
		"status": "IN_QUEUE", "queue_position": 0.0, "request_id": id, "gateway_request_id": id,
		"status_url": base + "/status", "response_url": base, "cancel_url": base + "/cancel",
	}
	for k, v := range want {
		if sub[k] != v {
			t.Errorf("submit %s = %v, want %v", k, sub[k], v)
		}
	}
	if c := do(t, http.MethodGet, base+"/status", key, ""); c.Code != http.StatusAccepted {
		t.Errorf("status at the returned URL: %d %s", c.Code, c.Body)
	}
	// §2.1: the subpath is used to submit, never to poll.
	if c := do(t, http.MethodGet, s.URL+"/fal-ai/flux/dev/requests/"+id+"/status", key, ""); c.Code != http.StatusNotFound {
		t.Errorf("status with the subpath: got %d, want 404", c.Code)
	}
	// Namespaced apps keep their prefix.
	ns := submit(t, s, "workflows/owner/flow", `{"prompt":"x"}`)
	if got := ns["status_url"]; !strings.HasPrefix(got.(string), s.URL+"/workflows/owner/flow/requests/") {
		t.Errorf("namespaced status_url = %v", got)
	}
	if got := s.Submissions()[0]; got.Model != "fal-ai/flux/dev" || got.App != "fal-ai/flux" || got.ID != id {
		t.Errorf("recorded submission = %+v", got)
	}
}

func TestProgressionQueuedRunningCompleted(t *testing.T) {
	t.Parallel()
	s := start(t, falfake.Config{QueueTime: falfake.Forever, RunTime: falfake.Forever, LogLines: 2})
	id := submit(t, s, "fal-ai/flux/dev", `{"prompt":"a cat","image_size":{"width":40,"height":30}}`)["request_id"].(string)
	statusURL := s.URL + "/fal-ai/flux/requests/" + id + "/status"

	c := do(t, http.MethodGet, statusURL, key, "")
	v := c.JSON(t)
	if c.Code != http.StatusAccepted || v["status"] != "IN_QUEUE" || v["queue_position"] != 0.0 {
		t.Errorf("queued status: %d %v", c.Code, v)
	}
	if l, ok := v["logs"]; !ok || l != nil {
		t.Errorf("logs must be present and null without ?logs=1, got %v (present %v)", l, ok)
	}

	s.Advance(id) // starts
	wait(t, s, id, falfake.StatusInProgress)
	s.Advance(id) // first log line
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := s.WaitLogs(ctx, id, 1); err != nil {
		t.Fatal(err)
	}
	c = do(t, http.MethodGet, statusURL+"?logs=1", key, "")
	v = c.JSON(t)
	logs, _ := v["logs"].([]any)
	if c.Code != http.StatusAccepted || v["status"] != "IN_PROGRESS" || len(logs) != 1 {
		t.Fatalf("running status: %d %v", c.Code, v)
	}
	entry, _ := logs[0].(map[string]any)
	if entry["message"] != "step 1/2" || entry["level"] != "INFO" || entry["source"] != "USER" || entry["timestamp"] == "" {
		t.Errorf("log entry = %v", entry)
	}
	if _, ok := v["queue_position"]; ok {
		t.Errorf("queue_position on a running request: %v", v)
	}

	s.Advance(id)
	s.Advance(id)
	wait(t, s, id, falfake.StatusCompleted)
	c = do(t, http.MethodGet, statusURL+"?logs=1", key, "")
	v = c.JSON(t)
	metrics, _ := v["metrics"].(map[string]any)
	if c.Code != http.StatusOK || v["status"] != "COMPLETED" || metrics["inference_time"] == nil {
		t.Errorf("completed status: %d %v", c.Code, v)
	}
	if _, ok := v["error"]; ok {
		t.Errorf("a success has no error: %v", v)
	}
	if s.Polls(id) != 3 {
		t.Errorf("polls = %d, want 3", s.Polls(id))
	}
}

func TestQueuePositionFallsAsRunnersFree(t *testing.T) {
	t.Parallel()
	s := start(t, falfake.Config{Runners: 1, RunTime: falfake.Forever})
	ids := make([]string, 3)
	for i := range ids {
		ids[i] = submit(t, s, "fal-ai/flux/dev", `{"prompt":"x"}`)["request_id"].(string)
	}
	wait(t, s, ids[0], falfake.StatusInProgress)
	position := func(id string) any {
		return do(t, http.MethodGet, s.URL+"/fal-ai/flux/requests/"+id+"/status", key, "").JSON(t)["queue_position"]
	}
	if p1, p2 := position(ids[1]), position(ids[2]); p1 != 0.0 || p2 != 1.0 {
		t.Errorf("positions while the first runs: %v, %v; want 0, 1", p1, p2)
	}
	s.Advance(ids[0])
	wait(t, s, ids[1], falfake.StatusInProgress)
	if p := position(ids[2]); p != 0.0 {
		t.Errorf("position after the first completed: %v, want 0", p)
	}
	if st := s.Status(ids[2]); st != falfake.StatusInQueue {
		t.Errorf("third request is %s with one runner busy", st)
	}
}

func TestResultWhileRunning(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		code int
		want string
	}{
		{"202 with the status body", 0, `"status":"IN_QUEUE"`},
		{"400 still in progress", http.StatusBadRequest, `"detail":"Request is still in progress"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := start(t, falfake.Config{QueueTime: falfake.Forever, ResultWhileRunning: tc.code})
			sub := submit(t, s, "fal-ai/flux/dev", `{"prompt":"x"}`)
			c := do(t, http.MethodGet, sub["response_url"].(string), key, "")
			want := tc.code
			if want == 0 {
				want = http.StatusAccepted
			}
			if c.Code != want || !strings.Contains(string(c.Body), tc.want) {
				t.Errorf("got %d %s, want %d with %s", c.Code, c.Body, want, tc.want)
			}
		})
	}
}

func TestCompletedResultHasPNGImages(t *testing.T) {
	t.Parallel()
	s := start(t, falfake.Config{})
	sub := submit(t, s, "fal-ai/flux/dev", `{"prompt":"a cat","seed":42,"num_images":2,"image_size":{"width":48,"height":32}}`)
	id := sub["request_id"].(string)
	wait(t, s, id, falfake.StatusCompleted)
	c := do(t, http.MethodGet, sub["response_url"].(string), key, "")
	if c.Code != http.StatusOK || c.Header.Get("x-fal-request-id") != id {
		t.Fatalf("result: %d %v %s", c.Code, c.Header, c.Body)
	}
	var out struct {
		Images []struct {
			URL           string
			ContentType   string `json:"content_type"`
			Width, Height int
		}
		Seed            int64
		HasNSFWConcepts []bool `json:"has_nsfw_concepts"`
		Prompt          string
	}
	if err := json.Unmarshal(c.Body, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Images) != 2 || out.Seed != 42 || out.Prompt != "a cat" || len(out.HasNSFWConcepts) != 2 {
		t.Fatalf("output = %s", c.Body)
	}
	var first []byte
	for i, img := range out.Images {
		if img.ContentType != "image/png" {
			t.Errorf("image %d content_type %q", i, img.ContentType)
		}
		got := do(t, http.MethodGet, img.URL, "", "")
		if got.Code != http.StatusOK || got.Header.Get("Content-Type") != "image/png" {
			t.Fatalf("image %d: %d %v", i, got.Code, got.Header)
		}
		decoded, err := png.Decode(bytes.NewReader(got.Body))
		if err != nil {
			t.Fatalf("image %d is not a PNG: %v", i, err)
		}
		if b := decoded.Bounds(); b.Dx() != 48 || b.Dy() != 32 || out.Images[i].Width != 48 || out.Images[i].Height != 32 {
			t.Errorf("image %d is %v, listed %dx%d", i, b, out.Images[i].Width, out.Images[i].Height)
		}
		if i == 0 {
			first = got.Body
		} else if bytes.Equal(first, got.Body) {
			t.Error("the two images are identical")
		}
		if s.Downloads(img.URL) != 1 {
			t.Errorf("downloads of image %d = %d", i, s.Downloads(img.URL))
		}
	}
}

func TestErrorsSurfaceAtTheResult(t *testing.T) {
	t.Parallel()
	s := start(t, falfake.Config{Outcome: func(sub falfake.Submission) falfake.Outcome {
		if strings.Contains(string(sub.Input), "crash") {
			return falfake.Outcome{Status: http.StatusInternalServerError, Detail: "CUDA out of memory", ErrorType: "runner_error"}
		}
		return falfake.DefaultOutcome(sub)
	}})
	for _, tc := range []struct {
		name, input string
		code        int
		body        string
		errorType   string
		statusError string
	}{
		{"422 validation detail", `{"image_size":"square"}`, http.StatusUnprocessableEntity,
			`{"detail":[{"loc":["body","prompt"],"msg":"field required","type":"value_error.missing"}]}`, "", "Invalid status code: 422"},
		{"500 with error_type", `{"prompt":"crash"}`, http.StatusInternalServerError,
			`{"detail":"CUDA out of memory","error_type":"runner_error"}`, "runner_error", "CUDA out of memory"},
	} {
		sub := submit(t, s, "fal-ai/flux/dev", tc.input)
		id := sub["request_id"].(string)
		wait(t, s, id, falfake.StatusCompleted)
		st := do(t, http.MethodGet, sub["status_url"].(string), key, "")
		if v := st.JSON(t); st.Code != http.StatusOK || v["status"] != "COMPLETED" || v["error"] != tc.statusError {
			t.Errorf("%s: status %d %v (no FAILED status in fal)", tc.name, st.Code, v)
		}
		c := do(t, http.MethodGet, sub["response_url"].(string), key, "")
		if c.Code != tc.code || strings.TrimSpace(string(c.Body)) != tc.body || c.Header.Get("x-fal-error-type") != tc.errorType {
			t.Errorf("%s: result %d %v %s", tc.name, c.Code, c.Header.Get("x-fal-error-type"), c.Body)
		}
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	cancelURL := func(s *falfake.Server, id string) string { return s.URL + "/fal-ai/flux/requests/" + id + "/cancel" }
	t.Run("queued is removed and never runs", func(t *testing.T) {
		t.Parallel()
		s := start(t, falfake.Config{QueueTime: falfake.Forever})
		sub := submit(t, s, "fal-ai/flux/dev", `{"prompt":"x"}`)
		id := sub["request_id"].(string)
		c := do(t, http.MethodPut, cancelURL(s, id), key, "")
		if c.Code != http.StatusAccepted || c.JSON(t)["status"] != "CANCELLATION_REQUESTED" {
			t.Fatalf("cancel: %d %s", c.Code, c.Body)
		}
		if st := s.Status(id); st != falfake.StatusCompleted {
			t.Fatalf("status after cancel = %s", st)
		}
		st := do(t, http.MethodGet, sub["status_url"].(string), key, "").JSON(t)
		if _, ran := st["metrics"]; ran {
			t.Errorf("a cancelled queued request reports metrics: %v", st)
		}
		if r := do(t, http.MethodGet, sub["response_url"].(string), key, ""); r.Code != http.StatusBadRequest {
			t.Errorf("result of a cancelled request: %d %s", r.Code, r.Body)
		}
	})
	t.Run("running ends when the app honours it", func(t *testing.T) {
		t.Parallel()
		s := start(t, falfake.Config{RunTime: falfake.Forever})
		sub := submit(t, s, "fal-ai/flux/dev", `{"prompt":"x"}`)
		id := sub["request_id"].(string)
		wait(t, s, id, falfake.StatusInProgress)
		if c := do(t, http.MethodPut, cancelURL(s, id), key, ""); c.Code != http.StatusAccepted {
			t.Fatalf("cancel: %d %s", c.Code, c.Body)
		}
		wait(t, s, id, falfake.StatusCompleted)
		if r := do(t, http.MethodGet, sub["response_url"].(string), key, ""); r.Code != http.StatusBadRequest || !strings.Contains(string(r.Body), "cancelled") {
			t.Errorf("result: %d %s", r.Code, r.Body)
		}
	})
	t.Run("running finishes when the app ignores it", func(t *testing.T) {
		t.Parallel()
		s := start(t, falfake.Config{RunTime: falfake.Forever, IgnoreCancel: true})
		sub := submit(t, s, "fal-ai/flux/dev", `{"prompt":"x","image_size":{"width":8,"height":8}}`)
		id := sub["request_id"].(string)
		wait(t, s, id, falfake.StatusInProgress)
		if c := do(t, http.MethodPut, cancelURL(s, id), key, ""); c.Code != http.StatusAccepted {
			t.Fatalf("cancel: %d", c.Code)
		}
		if st := s.Status(id); st != falfake.StatusInProgress {
			t.Fatalf("status = %s, want still running", st)
		}
		s.Advance(id)
		wait(t, s, id, falfake.StatusCompleted)
		if r := do(t, http.MethodGet, sub["response_url"].(string), key, ""); r.Code != http.StatusOK {
			t.Errorf("result: %d %s", r.Code, r.Body)
		}
	})
	t.Run("done and unknown", func(t *testing.T) {
		t.Parallel()
		s := start(t, falfake.Config{})
		id := submit(t, s, "fal-ai/flux/dev", `{"prompt":"x","image_size":{"width":8,"height":8}}`)["request_id"].(string)
		wait(t, s, id, falfake.StatusCompleted)
		if c := do(t, http.MethodPut, cancelURL(s, id), key, ""); c.Code != http.StatusBadRequest || c.JSON(t)["status"] != "ALREADY_COMPLETED" {
			t.Errorf("cancel when done: %d %s", c.Code, c.Body)
		}
		if c := do(t, http.MethodPut, cancelURL(s, "nope"), key, ""); c.Code != http.StatusNotFound || c.JSON(t)["status"] != "NOT_FOUND" {
			t.Errorf("cancel unknown: %d %s", c.Code, c.Body)
		}
		got := s.Cancels()
		if len(got) != 2 || got[0].Outcome != "ALREADY_COMPLETED" || got[1].ID != "nope" {
			t.Errorf("recorded cancels = %+v", got)
		}
	})
}

func TestRequestTimeoutIsAStartDeadline(t *testing.T) {
	t.Parallel()
	s := start(t, falfake.Config{Runners: 1, RunTime: falfake.Forever})
	running := submit(t, s, "fal-ai/flux/dev", `{"prompt":"x"}`, "X-Fal-Request-Timeout", "0.05")
	runningID := running["request_id"].(string)
	wait(t, s, runningID, falfake.StatusInProgress)
	queued := submit(t, s, "fal-ai/flux/dev", `{"prompt":"x"}`, "X-Fal-Request-Timeout", "0.05")
	queuedID := queued["request_id"].(string)

	// The second never gets the runner, so its deadline passes in the queue;
	// the first started in time, so the same deadline (which passed even
	// earlier) leaves it running.
	wait(t, s, queuedID, falfake.StatusCompleted)
	if st := s.Status(runningID); st != falfake.StatusInProgress {
		t.Errorf("the started request is %s after its start deadline passed", st)
	}
	c := do(t, http.MethodGet, queued["response_url"].(string), key, "")
	if c.Code != http.StatusGatewayTimeout || c.Header.Get("X-Fal-Request-Timeout-Type") != "user" {
		t.Errorf("result: %d %v %s", c.Code, c.Header, c.Body)
	}
	if c := do(t, http.MethodPost, s.URL+"/fal-ai/flux/dev", key, `{}`, "X-Fal-Request-Timeout", "soon"); c.Code != http.StatusBadRequest {
		t.Errorf("a bad timeout header: %d", c.Code)
	}
}

func TestPerKeyConcurrencyLimit(t *testing.T) {
	t.Parallel()
	s := start(t, falfake.Config{MaxConcurrentPerKey: 1, QueueTime: falfake.Forever})
	id := submit(t, s, "fal-ai/flux/dev", `{"prompt":"x","image_size":{"width":8,"height":8}}`)["request_id"].(string)
	c := do(t, http.MethodPost, s.URL+"/fal-ai/flux/dev", key, `{"prompt":"x"}`)
	if c.Code != http.StatusTooManyRequests || !strings.Contains(c.JSON(t)["detail"].(string), "limit") {
		t.Errorf("second submit: %d %s", c.Code, c.Body)
	}
	if c := do(t, http.MethodPost, s.URL+"/fal-ai/flux/dev", "other:key", `{"prompt":"x"}`); c.Code != http.StatusOK {
		t.Errorf("another key: %d", c.Code)
	}
	s.Advance(id)
	s.Advance(id)
	wait(t, s, id, falfake.StatusCompleted)
	if c := do(t, http.MethodPost, s.URL+"/fal-ai/flux/dev", key, `{"prompt":"x"}`); c.Code != http.StatusOK {
		t.Errorf("after the first completed: %d %s", c.Code, c.Body)
	}
}

// eventually polls cond until it holds: for behaviour that is a matter of
// wall-clock time (expiry), where there is no state change to wait on.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: never happened", what)
		case <-tick.C:
		}
	}
}

func TestOutputsAndResultsExpire(t *testing.T) {
	t.Parallel()
	s := start(t, falfake.Config{MediaTTL: time.Hour, ResultTTL: 200 * time.Millisecond})
	sub := submit(t, s, "fal-ai/flux/dev", `{"prompt":"x","image_size":{"width":8,"height":8}}`,
		"X-Fal-Object-Lifecycle-Preference", `{"expiration_duration_seconds": 0.1}`)
	wait(t, s, sub["request_id"].(string), falfake.StatusCompleted)
	c := do(t, http.MethodGet, sub["response_url"].(string), key, "")
	if c.Code != http.StatusOK {
		t.Fatalf("result: %d %s", c.Code, c.Body)
	}
	var out struct{ Images []struct{ URL string } }
	if err := json.Unmarshal(c.Body, &out); err != nil || len(out.Images) != 1 {
		t.Fatalf("output %s: %v", c.Body, err)
	}
	if got := do(t, http.MethodGet, out.Images[0].URL, "", ""); got.Code != http.StatusOK {
		t.Fatalf("fresh image: %d", got.Code)
	}
	eventually(t, "the image URL expiring", func() bool {
		return do(t, http.MethodGet, out.Images[0].URL, "", "").Code == http.StatusNotFound
	})
	eventually(t, "the result expiring", func() bool {
		return do(t, http.MethodGet, sub["response_url"].(string), key, "").Code == http.StatusNotFound
	})
}

func TestInjectedSubmitFailures(t *testing.T) {
	t.Parallel()
	s := start(t, falfake.Config{})
	s.FailNext(1, http.StatusBadGateway)
	s.FailNext(1, http.StatusTooManyRequests)
	c := do(t, http.MethodPost, s.URL+"/fal-ai/flux/dev", key, `{"prompt":"x"}`)
	if c.Code != http.StatusBadGateway || c.Header.Get("x-fal-request-id") != "" || !strings.Contains(string(c.Body), "nginx") {
		t.Errorf("ingress 502: %d %v %s", c.Code, c.Header, c.Body)
	}
	if c := do(t, http.MethodPost, s.URL+"/fal-ai/flux/dev", key, `{"prompt":"x"}`); c.Code != http.StatusTooManyRequests {
		t.Errorf("429: %d", c.Code)
	}
	if c := do(t, http.MethodPost, s.URL+"/fal-ai/flux/dev", key, `{"prompt":"x","image_size":{"width":8,"height":8}}`); c.Code != http.StatusOK {
		t.Errorf("after the injected failures: %d", c.Code)
	}
	subs := s.Submissions()
	if len(subs) != 3 || subs[0].Code != 502 || subs[0].ID != "" || subs[2].ID == "" {
		t.Errorf("recorded = %+v", subs)
	}
}

func TestRecordsHeadersAndWebhook(t *testing.T) {
	t.Parallel()
	s := start(t, falfake.Config{QueueTime: falfake.Forever})
	submit(t, s, "fal-ai/flux/dev?fal_webhook=http%3A%2F%2Fexample.test%2Fhook", `{"prompt":"x"}`,
		"X-Fal-Queue-Priority", "low", "X-Fal-Runner-Hint", "gpu-a")
	got := s.Submissions()[0]
	if got.Webhook != "http://example.test/hook" || got.Header.Get("X-Fal-Queue-Priority") != "low" ||
		got.Header.Get("X-Fal-Runner-Hint") != "gpu-a" || string(got.Input) != `{"prompt":"x"}` {
		t.Errorf("recorded = %+v", got)
	}
}

func TestStatusStream(t *testing.T) {
	t.Parallel()
	s := start(t, falfake.Config{QueueTime: falfake.Forever, RunTime: falfake.Forever})
	sub := submit(t, s, "fal-ai/flux/dev", `{"prompt":"x","image_size":{"width":8,"height":8}}`)
	id := sub["request_id"].(string)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, sub["status_url"].(string)+"/stream?logs=1", nil)
	req.Header.Set("Authorization", "Key "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	var statuses []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var v struct{ Status string }
		if err := json.Unmarshal([]byte(data), &v); err != nil {
			t.Fatalf("event %q: %v", data, err)
		}
		if len(statuses) == 0 || statuses[len(statuses)-1] != v.Status {
			statuses = append(statuses, v.Status)
		}
		s.Advance(id)
	}
	if got := strings.Join(statuses, ","); got != "IN_QUEUE,IN_PROGRESS,COMPLETED" {
		t.Errorf("streamed statuses %s", got)
	}
}

func TestLargeImagesAreScaledToMaxSide(t *testing.T) {
	t.Parallel()
	s := start(t, falfake.Config{MaxSide: 64})
	sub := submit(t, s, "fal-ai/flux/dev", `{"prompt":"x","image_size":"landscape_16_9"}`)
	wait(t, s, sub["request_id"].(string), falfake.StatusCompleted)
	var out struct {
		Images []struct {
			URL           string
			Width, Height int
		}
	}
	if err := json.Unmarshal(do(t, http.MethodGet, sub["response_url"].(string), key, "").Body, &out); err != nil || len(out.Images) != 1 {
		t.Fatalf("output: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(do(t, http.MethodGet, out.Images[0].URL, "", "").Body))
	if err != nil || img.Bounds().Dx() != 64 || img.Bounds().Dy() != 36 || out.Images[0].Width != 64 || out.Images[0].Height != 36 {
		t.Errorf("1024×576 capped at 64: listed %dx%d, file %v (%v)", out.Images[0].Width, out.Images[0].Height, img.Bounds(), err)
	}
}
