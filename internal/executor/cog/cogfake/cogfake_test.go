package cogfake_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/computeserver/compute/internal/executor/cog/cogfake"
	"github.com/computeserver/compute/internal/executor/internal/fakekit"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// do makes one request.
var do = fakekit.Do

// byStatus adapts an answer by the body's prediction status to
// fakekit.NewReceiver.
func byStatus(answer func(status string) int) func(int, []byte) int {
	return func(_ int, body []byte) int {
		var p struct{ Status string }
		_ = json.Unmarshal(body, &p) // the fake's own JSON
		return answer(p.Status)
	}
}

func start(t *testing.T, cfg cogfake.Config) *cogfake.Server {
	t.Helper()
	s := cogfake.NewServer(cfg)
	t.Cleanup(s.Close)
	return s
}

// putAsync starts prediction id with Prefer: respond-async.
func putAsync(t *testing.T, s *cogfake.Server, id, body string) fakekit.Call {
	t.Helper()
	return do(t, http.MethodPut, s.URL+"/predictions/"+id, body, "Prefer", "respond-async")
}

func ctx5(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var events = fakekit.Events

func TestHealthCheckStates(t *testing.T) {
	t.Parallel()
	s := start(t, cogfake.Config{SetupTime: cogfake.Forever, RunTime: cogfake.Forever})
	health := func() map[string]any {
		c := do(t, http.MethodGet, s.URL+"/health-check", "")
		if c.Code != http.StatusOK {
			t.Fatalf("health-check answered %d (always 200)", c.Code)
		}
		return c.JSON(t)
	}
	if h := health(); h["status"] != "STARTING" || h["setup"].(map[string]any)["status"] != "starting" {
		t.Errorf("during setup: %v", h)
	}
	c := putAsync(t, s, "p1", `{"input":{}}`)
	if v := c.JSON(t); c.Code != http.StatusServiceUnavailable || v["status"] != "failed" || v["error"] == "" {
		t.Errorf("predict before setup: %d %s", c.Code, c.Body)
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
	if c := putAsync(t, s, "p2", `{"input":{}}`); c.Code != http.StatusServiceUnavailable || health()["status"] != "UNHEALTHY" {
		t.Errorf("unhealthy: %d", c.Code)
	}

	bad := start(t, cogfake.Config{SetupFails: true})
	if err := bad.WaitHealth(ctx5(t), cogfake.HealthSetupFailed); err != nil {
		t.Fatal(err)
	}
	if c := putAsync(t, bad, "p", `{"input":{}}`); c.Code != http.StatusServiceUnavailable {
		t.Errorf("predict after a failed setup: %d", c.Code)
	}
	d := do(t, http.MethodGet, s.URL+"/", "").JSON(t)
	if d["predictions_idempotent_url"] != "/predictions/{prediction_id}" || d["healthcheck_url"] != "/health-check" {
		t.Errorf("discovery = %v", d)
	}
}

func TestAsyncPredictionReportsOnlyByWebhook(t *testing.T) {
	t.Parallel()
	rc := fakekit.NewReceiver(t, nil)
	s := start(t, cogfake.Config{LogLines: 2, WebhookThrottle: time.Nanosecond, WebhookAuthToken: "s3cret"})
	c := putAsync(t, s, "job-1", `{"input":{"prompt":"x","width":20,"height":10},"webhook":"`+rc.URL+`"}`)
	if v := c.JSON(t); c.Code != http.StatusAccepted || v["status"] != "starting" || v["id"] != "job-1" {
		t.Fatalf("PUT: %d %s", c.Code, c.Body)
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
	headers, bodies := rc.Got()
	for i, h := range headers {
		if h.Get("Authorization") != "Bearer s3cret" {
			t.Errorf("webhook %d Authorization %q", i, h.Get("Authorization"))
		}
	}
	var last map[string]any
	if err := json.Unmarshal(bodies[len(bodies)-1], &last); err != nil {
		t.Fatal(err)
	}
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
		if c.Code != http.StatusMethodNotAllowed || c.Header.Get("Allow") != http.MethodPut {
			t.Errorf("GET %s: %d %v", id, c.Code, c.Header)
		}
	}
}

func TestIdempotentPutWhileRunning(t *testing.T) {
	t.Parallel()
	rc := fakekit.NewReceiver(t, nil)
	s := start(t, cogfake.Config{RunTime: cogfake.Forever, LogLines: 1})
	body := `{"id":"job-1","input":{},"webhook":"` + rc.URL + `","webhook_events_filter":["start","completed"]}`
	putAsync(t, s, "job-1", body)
	if err := s.WaitStatus(ctx5(t), "job-1", cogfake.StatusProcessing); err != nil {
		t.Fatal(err)
	}
	c := putAsync(t, s, "job-1", body)
	if v := c.JSON(t); c.Code != http.StatusAccepted || v["status"] != "processing" || v["id"] != "job-1" {
		t.Errorf("second PUT: %d %s", c.Code, c.Body)
	}
	if c := putAsync(t, s, "job-1", `{"id":"job-2","input":{}}`); c.Code != http.StatusUnprocessableEntity {
		t.Errorf("body id differs from the path: %d %s", c.Code, c.Body)
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
	if v := c.JSON(t); c.Code != http.StatusOK || v["status"] != "succeeded" {
		t.Fatalf("sync PUT: %d %s", c.Code, c.Body)
	}
	if s.Status("job-1") != "" {
		t.Error("a completed prediction is still known")
	}
	// §3.2 ⚠: nothing is retained, so the same id runs again.
	c = putAsync(t, s, "job-1", `{"input":{"width":4,"height":4}}`)
	if v := c.JSON(t); c.Code != http.StatusAccepted || v["status"] != "starting" {
		t.Errorf("PUT after completion: %d %s", c.Code, c.Body)
	}
}

func TestBusySlotAnswers409(t *testing.T) {
	t.Parallel()
	s := start(t, cogfake.Config{RunTime: cogfake.Forever})
	putAsync(t, s, "a", `{"input":{}}`)
	c := putAsync(t, s, "b", `{"input":{}}`)
	if v := c.JSON(t); c.Code != http.StatusConflict || v["error"] != "At capacity - all prediction slots busy" || v["status"] != "failed" {
		t.Errorf("second prediction: %d %s", c.Code, c.Body)
	}
	two := start(t, cogfake.Config{RunTime: cogfake.Forever, Slots: 2})
	putAsync(t, two, "a", `{"input":{}}`)
	if c := putAsync(t, two, "b", `{"input":{}}`); c.Code != http.StatusAccepted {
		t.Errorf("two slots: %d", c.Code)
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	rc := fakekit.NewReceiver(t, nil)
	s := start(t, cogfake.Config{RunTime: cogfake.Forever})
	putAsync(t, s, "job-1", `{"input":{},"webhook":"`+rc.URL+`","webhook_events_filter":["completed"]}`)
	if c := do(t, http.MethodPost, s.URL+"/predictions/job-1/cancel", ""); c.Code != http.StatusOK {
		t.Errorf("cancel: %d %s", c.Code, c.Body)
	}
	if err := s.WaitDeliveries(ctx5(t), 1); err != nil {
		t.Fatal(err)
	}
	if got := events(s.Deliveries()); got != "completed:canceled" {
		t.Errorf("events = %s", got)
	}
	for _, id := range []string{"job-1", "unknown"} {
		if c := do(t, http.MethodPost, s.URL+"/predictions/"+id+"/cancel", ""); c.Code != http.StatusNotFound {
			t.Errorf("cancel %s: %d", id, c.Code)
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
	v := c.JSON(t)
	if c.Code != http.StatusOK || v["status"] != "succeeded" || v["id"] == "" || v["output"] == nil {
		t.Errorf("sync POST: %d %s", c.Code, c.Body)
	}
	c = do(t, http.MethodPost, s.URL+"/predictions", `{"input":{"width":4}}`)
	want := `{"detail":[{"loc":["body","input","prompt"],"msg":"Field required","type":"missing"}]}`
	if c.Code != http.StatusUnprocessableEntity || strings.TrimSpace(string(c.Body)) != want {
		t.Errorf("missing input: %d %s", c.Code, c.Body)
	}
	if c := do(t, http.MethodPost, s.URL+"/predictions", `{"input":{"prompt":"x"}}`, "Accept", "text/event-stream"); c.Code != http.StatusNotAcceptable {
		t.Errorf("SSE on a non-streaming model: %d", c.Code)
	}
	failing := start(t, cogfake.Config{Outcome: func(cogfake.Request) cogfake.Outcome { return cogfake.Outcome{Error: "boom"} }})
	if v := do(t, http.MethodPost, failing.URL+"/predictions", `{"input":{}}`).JSON(t); v["status"] != "failed" || v["error"] != "boom" {
		t.Errorf("failed: %v", v)
	}
}

func TestTerminalWebhookRetries(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	completed := 0
	rc := fakekit.NewReceiver(t, byStatus(func(status string) int {
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
	}))
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

	rejecting := fakekit.NewReceiver(t, byStatus(func(string) int { return http.StatusBadRequest }))
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
		rc := fakekit.NewReceiver(t, nil)
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
		rc := fakekit.NewReceiver(t, nil)
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
		if c := do(t, http.MethodPost, s.URL+"/predictions/job-1/cancel", ""); c.Code != http.StatusNotFound {
			t.Errorf("cancel after restart: %d", c.Code)
		}
		s.Close()
		if n := len(s.Deliveries()); n != 0 {
			t.Errorf("webhooks after a restart: %d", n)
		}
	})
}
