package app_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/executor/replicate/replicatefake"
	"github.com/computeserver/compute/internal/testutil/testdb"
	"github.com/computeserver/compute/internal/testutil/testserver"
)

// statusCounter counts the answers of a handler by status code.
type statusCounter struct {
	http.ResponseWriter
	code int
}

func (s *statusCounter) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// TestRateLimitedExecutorBacksOff: Replicate (its fake) allows two creates
// per window and answers 429 with Retry-After past them. The 429 pauses the
// executor, not the task: every task completes although each may run only
// one attempt, the refused ones record the deferral among their errors, and
// while the executor is paused no process sends it more creates, so the
// 429s stay few.
func TestRateLimitedExecutorBacksOff(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			fake, err := replicatefake.New(replicatefake.Config{Token: "r8-test", CreateLimit: 2, CreateWindow: time.Second, RunTime: 20 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(fake.Close)
			var creates, throttled atomic.Int32
			front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				sc := &statusCounter{ResponseWriter: w, code: http.StatusOK}
				fake.ServeHTTP(sc, r)
				if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/predictions") {
					creates.Add(1)
					if sc.code == http.StatusTooManyRequests {
						throttled.Add(1)
					}
				}
			}))
			t.Cleanup(front.Close)
			settings, _ := json.Marshal(map[string]any{
				"token": "r8-test", "model": "black-forest-labs/flux-schnell", "base_url": front.URL,
				"poll_interval": "10ms", "poll_max": "50ms",
			})
			cfg := testserver.Config(t, dialect, key)
			cfg.File = "/etc/compute.yaml"
			cfg.Executors = map[string]config.ExecutorEntry{"rep": {Type: "replicate", Settings: settings}}
			cfg.Types = map[string]config.TypeEntry{"generation": {Executor: "rep"}}
			srv := testserver.Start(t, cfg, app.Options{Workers: true, Version: "test"}, testdb.Logger(t))

			const n = 6
			ids := make([]string, n)
			for i := range n {
				var created struct{ ID string }
				body := fmt.Sprintf(`{"task_type":"generation","prompt":"a dress %d","width":64,"height":64,"max_attempts":1}`, i)
				if code := call(t, "POST", srv.Base+"/api/v1/tasks/", body, &created); code != 201 {
					t.Fatalf("create: %d", code)
				}
				ids[i] = created.ID
			}
			deferred := 0
			for _, id := range ids {
				var got struct {
					Status     string
					RetryCount int `json:"retry_count"`
					Errors     []struct{ Category, Message string }
				}
				for deadline := time.Now().Add(30 * time.Second); got.Status != "completed"; time.Sleep(50 * time.Millisecond) {
					if code := call(t, "GET", srv.Base+"/api/v1/tasks/"+id, "", &got); code != 200 || got.Status == "failed" || time.Now().After(deadline) {
						t.Fatalf("task %s: %d, status %q, errors %+v", id, code, got.Status, got.Errors)
					}
				}
				if got.RetryCount != 0 {
					t.Errorf("task %s spent %d retries on 429s", id, got.RetryCount)
				}
				for _, e := range got.Errors {
					if e.Category != "rate_limited" {
						t.Errorf("task %s has a %s error: %s", id, e.Category, e.Message)
					}
					deferred++
				}
			}
			t.Logf("%d creates, %d answered 429, %d deferrals", creates.Load(), throttled.Load(), deferred)
			if throttled.Load() == 0 || deferred == 0 {
				t.Fatalf("no create was refused (%d creates): the test did not exercise a 429", creates.Load())
			}
			// Each pause can catch the runs already past their claim (at
			// most the 4 workers); without the pause every refused task
			// would try again on its own schedule.
			if got := throttled.Load(); got > 2*n {
				t.Errorf("%d creates answered 429 for %d tasks: the executor did not back off", got, n)
			}
		})
	}
}
