package replicatefake_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"go.uber.org/goleak"

	"github.com/computeserver/compute/internal/executor/internal/fakekit"
	"github.com/computeserver/compute/internal/executor/replicate/replicatefake"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const token = "r8_test_token"

// prediction is the part of the §3.1 object the tests read.
type prediction struct {
	ID, Model, Version, Status, Logs, Source string
	Input                                    map[string]any
	Output                                   []string
	Error                                    *string
	DataRemoved                              bool `json:"data_removed"`
	Metrics                                  map[string]float64
	CreatedAt                                string  `json:"created_at"`
	StartedAt                                *string `json:"started_at"`
	CompletedAt                              *string `json:"completed_at"`
	Deadline                                 string
	URLs                                     map[string]string
}

// decode reads a prediction object from a response.
func decode(t *testing.T, c fakekit.Call) prediction {
	t.Helper()
	var p prediction
	if err := json.Unmarshal(c.Body, &p); err != nil {
		t.Fatalf("body %q: %v", c.Body, err)
	}
	return p
}

// do makes one request, with the Bearer token when not empty.
func do(t *testing.T, method, url, auth, body string, header ...string) fakekit.Call {
	t.Helper()
	if auth != "" {
		header = append(header, "Authorization", "Bearer "+auth)
	}
	return fakekit.Do(t, method, url, body, header...)
}

func start(t *testing.T, cfg replicatefake.Config) *replicatefake.Server {
	t.Helper()
	s, err := replicatefake.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

const version = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"

func create(t *testing.T, s *replicatefake.Server, body string, header ...string) prediction {
	t.Helper()
	c := do(t, http.MethodPost, s.URL+"/v1/predictions", token, body, header...)
	if c.Code != http.StatusCreated {
		t.Fatalf("create: %d %s", c.Code, c.Body)
	}
	return decode(t, c)
}

func get(t *testing.T, s *replicatefake.Server, id string) prediction {
	t.Helper()
	c := do(t, http.MethodGet, s.URL+"/v1/predictions/"+id, token, "")
	if c.Code != http.StatusOK {
		t.Fatalf("get: %d %s", c.Code, c.Body)
	}
	return decode(t, c)
}

func wait(t *testing.T, s *replicatefake.Server, id, status string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := s.WaitStatus(ctx, id, status); err != nil {
		t.Fatalf("prediction %s never reached %s (now %q)", id, status, s.Status(id))
	}
}

func TestAuthorization(t *testing.T) {
	t.Parallel()
	s := start(t, replicatefake.Config{Token: token})
	for _, auth := range []string{"", "wrong"} {
		c := do(t, http.MethodGet, s.URL+"/v1/predictions", auth, "")
		var p struct {
			Title, Detail string
			Status        int
		}
		if err := json.Unmarshal(c.Body, &p); err != nil || c.Code != http.StatusUnauthorized || p.Status != 401 || p.Detail == "" {
			t.Errorf("token %q: %d %s", auth, c.Code, c.Body)
		}
	}
	if c := do(t, http.MethodGet, s.URL+"/v1/predictions", token, ""); c.Code != http.StatusOK {
		t.Errorf("with the token: %d", c.Code)
	}
}

func TestCreateRoutesAndValidation(t *testing.T) {
	t.Parallel()
	s := start(t, replicatefake.Config{StartTime: replicatefake.Forever})
	p := create(t, s, `{"version":"`+version+`","input":{"prompt":"a cat"}}`)
	if p.Status != "starting" || p.Version != version || p.Source != "api" || p.Input["prompt"] != "a cat" ||
		p.URLs["get"] != s.URL+"/v1/predictions/"+p.ID || p.URLs["cancel"] != s.URL+"/v1/predictions/"+p.ID+"/cancel" ||
		p.StartedAt != nil || p.CreatedAt == "" {
		t.Errorf("created = %+v", p)
	}
	c := do(t, http.MethodPost, s.URL+"/v1/models/black-forest-labs/flux-schnell/predictions", token, `{"input":{"prompt":"x"}}`)
	if m := decode(t, c); c.Code != http.StatusCreated || m.Model != "black-forest-labs/flux-schnell" || m.Version != "hidden" {
		t.Errorf("by model: %d %+v", c.Code, m)
	}
	if c.Header.Get("Location") != s.URL+"/v1/predictions/"+decode(t, c).ID {
		t.Errorf("Location = %q", c.Header.Get("Location"))
	}
	c = do(t, http.MethodPost, s.URL+"/v1/deployments/acme/sdxl/predictions", token, `{"input":{}}`)
	if d := decode(t, c); c.Code != http.StatusCreated || d.Model != "acme/sdxl" {
		t.Errorf("by deployment: %d %+v", c.Code, d)
	}
	for _, tc := range []struct{ name, body string }{
		{"no version", `{"input":{"prompt":"x"}}`},
		{"no input", `{"version":"` + version + `"}`},
		{"unknown webhook event", `{"version":"v","input":{},"webhook":"http://x","webhook_events_filter":["done"]}`},
	} {
		if c := do(t, http.MethodPost, s.URL+"/v1/predictions", token, tc.body); c.Code != http.StatusUnprocessableEntity {
			t.Errorf("%s: %d %s", tc.name, c.Code, c.Body)
		}
	}
	list := do(t, http.MethodGet, s.URL+"/v1/predictions", token, "")
	var page struct{ Results []prediction }
	if err := json.Unmarshal(list.Body, &page); err != nil || len(page.Results) != 3 || page.Results[2].ID != p.ID {
		t.Errorf("list (newest first): %s", list.Body)
	}
	if got := s.Creates(); len(got) != 6 || got[3].Code != http.StatusUnprocessableEntity || got[0].ID != p.ID {
		t.Errorf("recorded creates = %d, first %+v", len(got), got[0])
	}
}

func TestLifecycleWithLogsMetricsAndOutputs(t *testing.T) {
	t.Parallel()
	s := start(t, replicatefake.Config{StartTime: replicatefake.Forever, RunTime: replicatefake.Forever, LogLines: 2})
	p := create(t, s, `{"version":"`+version+`","input":{"prompt":"x","width":24,"height":16,"num_outputs":2}}`)
	s.Advance(p.ID)
	wait(t, s, p.ID, "processing")
	if got := get(t, s, p.ID); got.StartedAt == nil || got.Logs != "" || got.Metrics["predict_time"] != 0 {
		t.Errorf("processing = %+v", got)
	}
	s.Advance(p.ID)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := s.WaitLogs(ctx, p.ID, 1); err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, p.ID); got.Logs != "step 1/2\n" || got.Status != "processing" {
		t.Errorf("after one step = %+v", got)
	}
	s.Advance(p.ID)
	s.Advance(p.ID)
	wait(t, s, p.ID, "succeeded")
	done := get(t, s, p.ID)
	if done.Logs != "step 1/2\nstep 2/2\n" || done.CompletedAt == nil || done.Error != nil || len(done.Output) != 2 {
		t.Fatalf("succeeded = %+v", done)
	}
	if _, ok := done.Metrics["predict_time"]; !ok || done.Metrics["total_time"] < done.Metrics["predict_time"] {
		t.Errorf("metrics = %v", done.Metrics)
	}
	for _, u := range done.Output {
		c := do(t, http.MethodGet, u, "", "")
		img, err := png.Decode(bytes.NewReader(c.Body))
		if c.Code != http.StatusOK || c.Header.Get("Content-Type") != "image/png" || err != nil || img.Bounds().Dx() != 24 || img.Bounds().Dy() != 16 {
			t.Errorf("output %s: %d %v %v", u, c.Code, c.Header.Get("Content-Type"), err)
		}
	}
	if s.Polls(p.ID) < 3 {
		t.Errorf("polls = %d", s.Polls(p.ID))
	}
}

func TestFailedPrediction(t *testing.T) {
	t.Parallel()
	s := start(t, replicatefake.Config{Outcome: func(replicatefake.Create) replicatefake.Outcome {
		return replicatefake.Outcome{Error: "CUDA out of memory"}
	}})
	p := create(t, s, `{"version":"v","input":{}}`)
	wait(t, s, p.ID, "failed")
	if got := get(t, s, p.ID); got.Error == nil || *got.Error != "CUDA out of memory" || got.Output != nil {
		t.Errorf("failed = %+v", got)
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	s := start(t, replicatefake.Config{RunTime: replicatefake.Forever})
	p := create(t, s, `{"version":"v","input":{}}`)
	wait(t, s, p.ID, "processing")
	c := do(t, http.MethodPost, s.URL+"/v1/predictions/"+p.ID+"/cancel", token, "")
	if got := decode(t, c); c.Code != http.StatusOK || got.Status != "canceled" || got.CompletedAt == nil {
		t.Errorf("cancel: %d %+v", c.Code, got)
	}
	if got := decode(t, do(t, http.MethodPost, s.URL+"/v1/predictions/"+p.ID+"/cancel", token, "")); got.Status != "canceled" {
		t.Errorf("second cancel: %+v", got)
	}
	if c := do(t, http.MethodPost, s.URL+"/v1/predictions/nope/cancel", token, ""); c.Code != http.StatusNotFound {
		t.Errorf("unknown: %d", c.Code)
	}
	if got := s.Cancels(); len(got) != 3 || got[0] != p.ID {
		t.Errorf("recorded cancels = %v", got)
	}
}

func TestPreferWait(t *testing.T) {
	t.Parallel()
	fast := start(t, replicatefake.Config{})
	if p := create(t, fast, `{"version":"v","input":{"width":8,"height":8}}`, "Prefer", "wait"); p.Status != "succeeded" || len(p.Output) != 1 {
		t.Errorf("finished within the wait: %+v", p)
	}
	slow := start(t, replicatefake.Config{StartTime: replicatefake.Forever, MaxWait: 30 * time.Millisecond})
	c := do(t, http.MethodPost, slow.URL+"/v1/predictions", token, `{"version":"v","input":{}}`, "Prefer", "wait=5")
	if p := decode(t, c); c.Code != http.StatusCreated || p.Status != "starting" || c.Header.Get("Location") != p.URLs["get"] {
		t.Errorf("not finished within the wait: %d %+v %v", c.Code, p, c.Header)
	}
	if c := do(t, http.MethodPost, slow.URL+"/v1/predictions", token, `{"version":"v","input":{}}`, "Prefer", "wait=0"); c.Code != http.StatusBadRequest {
		t.Errorf("wait=0: %d", c.Code)
	}
}

func TestCancelAfter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		cfg     replicatefake.Config
		want    string
		started bool
	}{
		{"not started: aborted", replicatefake.Config{StartTime: replicatefake.Forever}, "aborted", false},
		{"running: canceled", replicatefake.Config{RunTime: replicatefake.Forever}, "canceled", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := start(t, tc.cfg)
			p := create(t, s, `{"version":"v","input":{}}`, "Cancel-After", "40ms")
			if p.Deadline == "" {
				t.Errorf("no deadline in %+v", p)
			}
			wait(t, s, p.ID, tc.want)
			if got := get(t, s, p.ID); (got.StartedAt != nil) != tc.started || got.CompletedAt == nil {
				t.Errorf("%s = %+v", tc.want, got)
			}
		})
	}
	s := start(t, replicatefake.Config{})
	if c := do(t, http.MethodPost, s.URL+"/v1/predictions", token, `{"version":"v","input":{}}`, "Cancel-After", "soon"); c.Code != http.StatusBadRequest {
		t.Errorf("bad Cancel-After: %d", c.Code)
	}
}

func TestCreateRateLimit(t *testing.T) {
	t.Parallel()
	s := start(t, replicatefake.Config{CreateLimit: 2, StartTime: replicatefake.Forever})
	create(t, s, `{"version":"v","input":{}}`)
	create(t, s, `{"version":"v","input":{}}`)
	c := do(t, http.MethodPost, s.URL+"/v1/predictions", token, `{"version":"v","input":{}}`)
	after, err := strconv.Atoi(c.Header.Get("Retry-After"))
	var body struct{ Detail string }
	_ = json.Unmarshal(c.Body, &body)
	if c.Code != http.StatusTooManyRequests || err != nil || after < 1 || after > 60 ||
		body.Detail != "Request was throttled. Your rate limit resets in ~"+strconv.Itoa(after)+"s." {
		t.Errorf("third create: %d Retry-After %q %s", c.Code, c.Header.Get("Retry-After"), c.Body)
	}
	if c := do(t, http.MethodGet, s.URL+"/v1/predictions", token, ""); c.Code != http.StatusOK {
		t.Errorf("reads are not limited by creates: %d", c.Code)
	}
}

func TestRetentionRemovesData(t *testing.T) {
	t.Parallel()
	s := start(t, replicatefake.Config{Retention: 60 * time.Millisecond})
	p := create(t, s, `{"version":"v","input":{"prompt":"x","width":8,"height":8}}`, "Prefer", "wait")
	if p.Status != "succeeded" || p.DataRemoved || len(p.Output) != 1 {
		t.Fatalf("fresh = %+v", p)
	}
	if c := do(t, http.MethodGet, p.Output[0], "", ""); c.Code != http.StatusOK {
		t.Fatalf("fresh output: %d", c.Code)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for !get(t, s, p.ID).DataRemoved {
		select {
		case <-ctx.Done():
			t.Fatal("data never removed")
		case <-time.After(5 * time.Millisecond): // wall-clock expiry: nothing to wait on
		}
	}
	if got := get(t, s, p.ID); got.Output != nil || len(got.Input) != 0 || got.Logs != "" || got.Status != "succeeded" {
		t.Errorf("removed = %+v", got)
	}
	if c := do(t, http.MethodGet, p.Output[0], "", ""); c.Code != http.StatusNotFound {
		t.Errorf("removed output: %d", c.Code)
	}
}

// waitTerminalDelivery waits until the fake has delivered (or given up on)
// every webhook of prediction id: its sender ends after completed.
func deliveries(t *testing.T, s *replicatefake.Server, n int) []replicatefake.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := s.WaitDeliveries(ctx, n); err != nil {
		t.Fatalf("only %d deliveries, want %d", len(s.Deliveries()), n)
	}
	return s.Deliveries()
}

var events = fakekit.Events

func TestWebhooksAreSignedAndOrdered(t *testing.T) {
	t.Parallel()
	rc := fakekit.NewReceiver(t, nil)
	s := start(t, replicatefake.Config{LogLines: 2, WebhookThrottle: time.Nanosecond})
	p := create(t, s, `{"version":"v","input":{"width":8,"height":8},"webhook":"`+rc.URL+`"}`)
	ds := deliveries(t, s, 5)
	if got := events(ds); got != "start:starting,logs:processing,logs:processing,output:processing,completed:succeeded" {
		t.Errorf("events = %s", got)
	}
	var secret struct{ Key string }
	_ = json.Unmarshal(do(t, http.MethodGet, s.URL+"/v1/webhooks/default/secret", token, "").Body, &secret)
	if secret.Key != s.Secret() || !strings.HasPrefix(secret.Key, "whsec_") {
		t.Fatalf("secret endpoint %q vs %q", secret.Key, s.Secret())
	}
	verifier, err := standardwebhooks.NewWebhook(secret.Key)
	if err != nil {
		t.Fatal(err)
	}
	headers, bodies := rc.Got()
	if len(headers) != 5 {
		t.Fatalf("receiver got %d", len(headers))
	}
	ids := map[string]bool{}
	for i, h := range headers {
		if err := verifier.Verify(bodies[i], h); err != nil {
			t.Errorf("delivery %d does not verify: %v", i, err)
		}
		ids[h.Get("webhook-id")] = true
	}
	if len(ids) != 5 {
		t.Errorf("webhook ids not unique per message: %v", ids)
	}
	var last prediction
	_ = json.Unmarshal(bodies[4], &last)
	if last.ID != p.ID || last.Status != "succeeded" || len(last.Output) != 1 || last.Logs != "step 1/2\nstep 2/2\n" {
		t.Errorf("completed body = %+v", last)
	}
}

func TestWebhookFilterAndThrottle(t *testing.T) {
	t.Parallel()
	rc := fakekit.NewReceiver(t, nil)
	t.Run("filter", func(t *testing.T) {
		s := start(t, replicatefake.Config{LogLines: 2})
		create(t, s, `{"version":"v","input":{"width":8,"height":8},"webhook":"`+rc.URL+`","webhook_events_filter":["completed"]}`)
		if got := events(deliveries(t, s, 1)); got != "completed:succeeded" {
			t.Errorf("events = %s", got)
		}
		s.Close() // the sender has ended: nothing else arrives
		if n := len(s.Deliveries()); n != 1 {
			t.Errorf("deliveries = %d", n)
		}
	})
	t.Run("throttle coalesces into completed", func(t *testing.T) {
		s := start(t, replicatefake.Config{LogLines: 3, RunTime: replicatefake.Forever, WebhookThrottle: time.Hour})
		p := create(t, s, `{"version":"v","input":{"width":8,"height":8},"webhook":"`+rc.URL+`"}`)
		for range 4 {
			for !s.Advance(p.ID) {
				if s.Status(p.ID) == "succeeded" {
					break
				}
			}
		}
		wait(t, s, p.ID, "succeeded")
		ds := deliveries(t, s, 3)
		s.Close()
		if got := events(s.Deliveries()); got != "start:starting,logs:processing,completed:succeeded" {
			t.Errorf("events = %s (deliveries %d)", got, len(ds))
		}
	})
}

func TestCompletedWebhookRetriesAndDuplicates(t *testing.T) {
	t.Parallel()
	rc := fakekit.NewReceiver(t, func(n int, body []byte) int {
		if bytes.Contains(body, []byte(`"status":"succeeded"`)) && n <= 2 {
			return http.StatusInternalServerError
		}
		if bytes.Contains(body, []byte(`"status":"starting"`)) {
			return http.StatusServiceUnavailable // not retried: only completed is
		}
		return http.StatusOK
	})
	s := start(t, replicatefake.Config{WebhookBackoff: time.Millisecond, DuplicateCompleted: true})
	create(t, s, `{"version":"v","input":{"width":8,"height":8},"webhook":"`+rc.URL+`","webhook_events_filter":["start","completed"]}`)
	ds := deliveries(t, s, 4)
	s.Close()
	ds = s.Deliveries()
	if got := events(ds); got != "start:starting,completed:succeeded,completed:succeeded,completed:succeeded" {
		t.Fatalf("events = %s", got)
	}
	if ds[0].Code != 503 || ds[1].Code != 500 || ds[1].Attempt != 1 || ds[2].Attempt != 2 || ds[2].Code != 200 || ds[3].Attempt != 1 {
		t.Errorf("attempts = %+v", ds)
	}
	if id := ds[1].Header.Get("webhook-id"); ds[2].Header.Get("webhook-id") != id || ds[3].Header.Get("webhook-id") != id {
		t.Error("a retry or a duplicate must keep the webhook-id")
	}
}
