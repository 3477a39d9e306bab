package cogfake_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/computeserver/compute/internal/executor/cog/cogfake"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type call struct {
	code   int
	header http.Header
	body   []byte
}

func (c call) json(t *testing.T) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(c.body, &v); err != nil {
		t.Fatalf("body %q: %v", c.body, err)
	}
	return v
}

func do(t *testing.T, method, url, body string, header ...string) call {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return call{resp.StatusCode, resp.Header, data}
}

func start(t *testing.T, cfg cogfake.Config) *cogfake.Server {
	t.Helper()
	s := cogfake.NewServer(cfg)
	t.Cleanup(s.Close)
	return s
}

// receiver is a webhook endpoint that records what it gets.
type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	headers []http.Header
	bodies  []map[string]any
	answer  func(status string) int
}

func newReceiver(t *testing.T, answer func(status string) int) *receiver {
	rc := &receiver{answer: answer}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		rc.mu.Lock()
		rc.headers = append(rc.headers, r.Header.Clone())
		rc.bodies = append(rc.bodies, body)
		rc.mu.Unlock()
		code := http.StatusOK
		if rc.answer != nil {
			code = rc.answer(body["status"].(string))
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(rc.Close)
	return rc
}

// putAsync starts prediction id with Prefer: respond-async.
func putAsync(t *testing.T, s *cogfake.Server, id, body string) call {
	t.Helper()
	return do(t, http.MethodPut, s.URL+"/predictions/"+id, body, "Prefer", "respond-async")
}

func ctx5(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func events(ds []cogfake.Delivery) string {
	var names []string
	for _, d := range ds {
		names = append(names, d.Event+":"+d.Status)
	}
	return strings.Join(names, ",")
}

func TestHealthCheckStates(t *testing.T) {
	t.Parallel()
	s := start(t, cogfake.Config{SetupTime: cogfake.Forever, RunTime: cogfake.Forever})
	health := func() map[string]any {
		c := do(t, http.MethodGet, s.URL+"/health-check", "")
		if c.code != http.StatusOK {
			t.Fatalf("health-check answered %d (always 200)", c.code)
		}
		return c.json(t)
	}
	if h := health(); h["status"] != "STARTING" || h["setup"].(map[string]any)["status"] != "starting" {
		t.Errorf("during setup: %v", h)
	}
	c := putAsync(t, s, "p1", `{"input":{}}`)
	if v := c.json(t); c.code != http.StatusServiceUnavailable || v["status"] != "failed" || v["error"] == "" {
		t.Errorf("predict before setup: %d %s", c.code, c.body)
	}
	s.FinishSetup()
	if err := s.WaitHealth(ctx5(t), cogfake.HealthReady); err != nil {
		t.Fatal(err)
	}
	if h := health(); h["setup"].(map[string]any)["completed_at"] == nil {
		t.Errorf("ready: %v", h)
	}
	putAsync(t, s, "p1", `{"input":{}}`)
	if h := health(); h["status"] != "BUSY" {
		t.Errorf("with the slot taken: %v", h)
	}
	s.SetHealth(cogfake.HealthUnhealthy)
	if c := putAsync(t, s, "p2", `{"input":{}}`); c.code != http.StatusServiceUnavailable || health()["status"] != "UNHEALTHY" {
		t.Errorf("unhealthy: %d", c.code)
	}

	bad := start(t, cogfake.Config{SetupFails: true})
	if err := bad.WaitHealth(ctx5(t), cogfake.HealthSetupFailed); err != nil {
		t.Fatal(err)
	}
	if c := putAsync(t, bad, "p", `{"input":{}}`); c.code != http.StatusServiceUnavailable {
		t.Errorf("predict after a failed setup: %d", c.code)
	}
	d := do(t, http.MethodGet, s.URL+"/", "").json(t)
	if d["predictions_idempotent_url"] != "/predictions/{prediction_id}" || d["healthcheck_url"] != "/health-check" {
		t.Errorf("discovery = %v", d)
	}
}

func TestAsyncPredictionReportsOnlyByWebhook(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil)
	s := start(t, cogfake.Config{LogLines: 2, WebhookThrottle: time.Nanosecond, WebhookAuthToken: "s3cret"})
	c := putAsync(t, s, "job-1", `{"input":{"prompt":"x","width":20,"height":10},"webhook":"`+rc.URL+`"}`)
	if v := c.json(t); c.code != http.StatusAccepted || v["status"] != "starting" || v["id"] != "job-1" {
		t.Fatalf("PUT: %d %s", c.code, c.body)
	}
	if err := s.WaitDeliveries(ctx5(t), 5); err != nil {
		t.Fatal(err)
	}
	if got := events(s.Deliveries()); got != "start:processing,logs:processing,logs:processing,output:processing,completed:succeeded" {
		t.Errorf("events = %s", got)
	}
	if err := s.WaitStatus(ctx5(t), "job-1", ""); err != nil {
		t.Fatal(err)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for i, h := range rc.headers {
		if h.Get("Authorization") != "Bearer s3cret" {
			t.Errorf("webhook %d Authorization %q", i, h.Get("Authorization"))
		}
	}
	last := rc.bodies[len(rc.bodies)-1]
	out, _ := last["output"].([]any)
	if last["status"] != "succeeded" || last["logs"] != "step 1/2\nstep 2/2\n" || len(out) != 1 || last["completed_at"] == nil {
		t.Fatalf("completed body = %v", last)
	}
	b64, ok := strings.CutPrefix(out[0].(string), "data:image/png;base64,")
	data, err := base64.StdEncoding.DecodeString(b64)
	if !ok || err != nil {
		t.Fatalf("output %q is not a PNG data URL", out[0])
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil || img.Bounds().Dx() != 20 || img.Bounds().Dy() != 10 {
		t.Errorf("output image: %v %v", err, img)
	}
	if m, _ := last["metrics"].(map[string]any); m["predict_time"] == nil {
		t.Errorf("metrics = %v", last["metrics"])
	}
}

func TestNoPollingEndpoint(t *testing.T) {
	t.Parallel()
	s := start(t, cogfake.Config{RunTime: cogfake.Forever})
	putAsync(t, s, "job-1", `{"input":{}}`)
	for _, id := range []string{"job-1", "unknown"} {
		c := do(t, http.MethodGet, s.URL+"/predictions/"+id, "")
		if c.code != http.StatusMethodNotAllowed || c.header.Get("Allow") != http.MethodPut {
			t.Errorf("GET %s: %d %v", id, c.code, c.header)
		}
	}
}

func TestIdempotentPutWhileRunning(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil)
	s := start(t, cogfake.Config{RunTime: cogfake.Forever, LogLines: 1})
	body := `{"id":"job-1","input":{},"webhook":"` + rc.URL + `","webhook_events_filter":["start","completed"]}`
	putAsync(t, s, "job-1", body)
	if err := s.WaitStatus(ctx5(t), "job-1", cogfake.StatusProcessing); err != nil {
		t.Fatal(err)
	}
	c := putAsync(t, s, "job-1", body)
	if v := c.json(t); c.code != http.StatusAccepted || v["status"] != "processing" || v["id"] != "job-1" {
		t.Errorf("second PUT: %d %s", c.code, c.body)
	}
	if c := putAsync(t, s, "job-1", `{"id":"job-2","input":{}}`); c.code != http.StatusUnprocessableEntity {
		t.Errorf("body id differs from the path: %d %s", c.code, c.body)
	}
	s.Advance("job-1")
	s.Advance("job-1")
	if err := s.WaitDeliveries(ctx5(t), 2); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if got := events(s.Deliveries()); got != "start:processing,completed:succeeded" {
		t.Errorf("one run only, events = %s", got)
	}
	if n := len(s.Requests()); n != 3 {
		t.Errorf("requests = %d", n)
	}
}

func TestRePutAfterCompletionStartsANewRun(t *testing.T) {
	t.Parallel()
	s := start(t, cogfake.Config{})
	c := do(t, http.MethodPut, s.URL+"/predictions/job-1", `{"input":{"width":4,"height":4}}`)
	if v := c.json(t); c.code != http.StatusOK || v["status"] != "succeeded" {
		t.Fatalf("sync PUT: %d %s", c.code, c.body)
	}
	if s.Status("job-1") != "" {
		t.Error("a completed prediction is still known")
	}
	// §3.2 ⚠: nothing is retained, so the same id runs again.
	c = putAsync(t, s, "job-1", `{"input":{"width":4,"height":4}}`)
	if v := c.json(t); c.code != http.StatusAccepted || v["status"] != "starting" {
		t.Errorf("PUT after completion: %d %s", c.code, c.body)
	}
}

func TestBusySlotAnswers409(t *testing.T) {
	t.Parallel()
	s := start(t, cogfake.Config{RunTime: cogfake.Forever})
	putAsync(t, s, "a", `{"input":{}}`)
	c := putAsync(t, s, "b", `{"input":{}}`)
	if v := c.json(t); c.code != http.StatusConflict || v["error"] != "At capacity - all prediction slots busy" || v["status"] != "failed" {
		t.Errorf("second prediction: %d %s", c.code, c.body)
	}
	two := start(t, cogfake.Config{RunTime: cogfake.Forever, Slots: 2})
	putAsync(t, two, "a", `{"input":{}}`)
	if c := putAsync(t, two, "b", `{"input":{}}`); c.code != http.StatusAccepted {
		t.Errorf("two slots: %d", c.code)
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil)
	s := start(t, cogfake.Config{RunTime: cogfake.Forever})
	putAsync(t, s, "job-1", `{"input":{},"webhook":"`+rc.URL+`","webhook_events_filter":["completed"]}`)
	if c := do(t, http.MethodPost, s.URL+"/predictions/job-1/cancel", ""); c.code != http.StatusOK {
		t.Errorf("cancel: %d %s", c.code, c.body)
	}
	if err := s.WaitDeliveries(ctx5(t), 1); err != nil {
		t.Fatal(err)
	}
	if got := events(s.Deliveries()); got != "completed:canceled" {
		t.Errorf("events = %s", got)
	}
	for _, id := range []string{"job-1", "unknown"} {
		if c := do(t, http.MethodPost, s.URL+"/predictions/"+id+"/cancel", ""); c.code != http.StatusNotFound {
			t.Errorf("cancel %s: %d", id, c.code)
		}
	}
	if got := s.Cancels(); len(got) != 3 {
		t.Errorf("recorded cancels = %v", got)
	}
}

func TestSyncPostAndValidation(t *testing.T) {
	t.Parallel()
	s := start(t, cogfake.Config{RequiredInputs: []string{"prompt"}})
	c := do(t, http.MethodPost, s.URL+"/predictions", `{"input":{"prompt":"x","width":4,"height":4}}`)
	v := c.json(t)
	if c.code != http.StatusOK || v["status"] != "succeeded" || v["id"] == "" || v["output"] == nil {
		t.Errorf("sync POST: %d %s", c.code, c.body)
	}
	c = do(t, http.MethodPost, s.URL+"/predictions", `{"input":{"width":4}}`)
	want := `{"detail":[{"loc":["body","input","prompt"],"msg":"Field required","type":"missing"}]}`
	if c.code != http.StatusUnprocessableEntity || strings.TrimSpace(string(c.body)) != want {
		t.Errorf("missing input: %d %s", c.code, c.body)
	}
	if c := do(t, http.MethodPost, s.URL+"/predictions", `{"input":{"prompt":"x"}}`, "Accept", "text/event-stream"); c.code != http.StatusNotAcceptable {
		t.Errorf("SSE on a non-streaming model: %d", c.code)
	}
	failing := start(t, cogfake.Config{Outcome: func(cogfake.Request) cogfake.Outcome { return cogfake.Outcome{Error: "boom"} }})
	if v := do(t, http.MethodPost, failing.URL+"/predictions", `{"input":{}}`).json(t); v["status"] != "failed" || v["error"] != "boom" {
		t.Errorf("failed: %v", v)
	}
}

func TestTerminalWebhookRetries(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	completed := 0
	rc := newReceiver(t, func(status string) int {
		mu.Lock()
		defer mu.Unlock()
		if status == "processing" {
			return http.StatusInternalServerError // non-terminal: fire-and-forget
		}
		completed++
		if completed <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	s := start(t, cogfake.Config{WebhookBackoff: time.Millisecond})
	putAsync(t, s, "job-1", `{"input":{"width":4,"height":4},"webhook":"`+rc.URL+`","webhook_events_filter":["start","completed"]}`)
	if err := s.WaitDeliveries(ctx5(t), 4); err != nil {
		t.Fatal(err)
	}
	s.Close()
	ds := s.Deliveries()
	if got := events(ds); got != "start:processing,completed:succeeded,completed:succeeded,completed:succeeded" {
		t.Fatalf("events = %s", got)
	}
	if ds[0].Code != 500 || ds[1].Code != 503 || ds[3].Code != 200 || ds[3].Attempt != 3 {
		t.Errorf("attempts = %+v", ds)
	}

	rejecting := newReceiver(t, func(string) int { return http.StatusBadRequest })
	s2 := start(t, cogfake.Config{WebhookBackoff: time.Millisecond})
	putAsync(t, s2, "job-1", `{"input":{"width":4,"height":4},"webhook":"`+rejecting.URL+`","webhook_events_filter":["completed"]}`)
	if err := s2.WaitDeliveries(ctx5(t), 1); err != nil {
		t.Fatal(err)
	}
	s2.Close()
	if n := len(s2.Deliveries()); n != 1 {
		t.Errorf("a 400 is not retried, got %d attempts", n)
	}
}

func TestLostCallbacks(t *testing.T) {
	t.Parallel()
	t.Run("completed webhook never comes", func(t *testing.T) {
		t.Parallel()
		rc := newReceiver(t, nil)
		s := start(t, cogfake.Config{DropCompleted: true})
		putAsync(t, s, "job-1", `{"input":{"width":4,"height":4},"webhook":"`+rc.URL+`","webhook_events_filter":["start","completed"]}`)
		if err := s.WaitStatus(ctx5(t), "job-1", ""); err != nil {
			t.Fatal(err)
		}
		if err := s.WaitDeliveries(ctx5(t), 1); err != nil {
			t.Fatal(err)
		}
		s.Close()
		if got := events(s.Deliveries()); got != "start:processing" {
			t.Errorf("events = %s", got)
		}
	})
	t.Run("restart forgets what runs", func(t *testing.T) {
		t.Parallel()
		rc := newReceiver(t, nil)
		s := start(t, cogfake.Config{RunTime: cogfake.Forever, Slots: 2})
		putAsync(t, s, "job-1", `{"input":{},"webhook":"`+rc.URL+`","webhook_events_filter":["completed"]}`)
		sync := make(chan error, 1)
		go func() {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPut, s.URL+"/predictions/job-2", strings.NewReader(`{"input":{}}`))
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			sync <- err
		}()
		if err := s.WaitStatus(ctx5(t), "job-2", cogfake.StatusProcessing); err != nil {
			t.Fatal(err)
		}
		s.Restart()
		if s.Status("job-1") != "" || s.Status("job-2") != "" {
			t.Error("a prediction survived the restart")
		}
		if err := <-sync; err == nil {
			t.Error("a sync request survived the restart")
		}
		if err := s.WaitHealth(ctx5(t), cogfake.HealthReady); err != nil {
			t.Fatal(err)
		}
		if c := do(t, http.MethodPost, s.URL+"/predictions/job-1/cancel", ""); c.code != http.StatusNotFound {
			t.Errorf("cancel after restart: %d", c.code)
		}
		s.Close()
		if n := len(s.Deliveries()); n != 0 {
			t.Errorf("webhooks after a restart: %d", n)
		}
	})
}
