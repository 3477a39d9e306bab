package app_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/executor/comfyui/comfyfake"
	"github.com/computeserver/compute/internal/testutil/testdb"
	"github.com/computeserver/compute/internal/testutil/testserver"
)

// TestComfyUIRunIsOneTrace: a task created over HTTP and run on the
// comfyui executor against the fake server, in a worker process of its
// own, yields one trace holding the create request, the run with the
// executor's start and wait, a client span for each of the executor's
// HTTP calls to the server (/prompt, /history, /view) whose traceparent
// the server received, and the webhook delivery with its request, whose
// traceparent the receiver got too. The task shows the server's execution
// time as its usage.provider_seconds.
func TestComfyUIRunIsOneTrace(t *testing.T) {
	exp := installTracing(t)
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			var mu sync.Mutex
			seen := map[string][]string{} // path -> traceparents the fake got
			fake := comfyfake.StartT(t, comfyfake.Options{OnRequest: func(r *http.Request) {
				mu.Lock()
				defer mu.Unlock()
				seen[r.URL.Path] = append(seen[r.URL.Path], r.Header.Get("traceparent"))
			}})
			hooked := make(chan string, 10)
			hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var body struct{ Status string }
				_ = json.NewDecoder(r.Body).Decode(&body)
				if body.Status == "completed" {
					hooked <- r.Header.Get("traceparent")
				}
				w.WriteHeader(http.StatusNoContent)
			}))
			t.Cleanup(hook.Close)

			cfg := testserver.Config(t, dialect, key)
			cfg.WebhookAllowPrivate = true
			cfg.Executors = map[string]config.ExecutorEntry{"gpu": {Type: "comfyui", Settings: comfySettings(t, fake.URL()), Dir: comfyDir(t)}}
			cfg.Types = map[string]config.TypeEntry{"generation": {Executor: "gpu"}}
			api := cfg
			api.Workers = 0
			srv := testserver.Start(t, api, app.Options{Version: "test"}, testdb.Logger(t))
			testserver.Start(t, cfg, app.Options{Workers: true, NoAPI: true, Version: "test"}, testdb.Logger(t))

			var created struct{ ID string }
			body := `{"task_type":"generation","prompt":"dress","width":64,"height":64,"webhook_url":"` + hook.URL + `/hook"}`
			if code := call(t, "POST", srv.Base+"/api/v1/tasks/", body, &created); code != 201 {
				t.Fatalf("create: %d", code)
			}
			var hookParent string
			select {
			case hookParent = <-hooked:
			case <-time.After(30 * time.Second):
				t.Fatalf("no completed webhook for task %s", created.ID)
			}
			var req tracetest.SpanStub
			for deadline := time.Now().Add(10 * time.Second); req.Name == ""; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("no span of the create request")
				}
				for _, s := range exp.GetSpans() {
					if s.Name == "POST /api/v1/tasks/" && s.EndTime.After(s.StartTime) && hasChild(exp.GetSpans(), s, "task.run", created.ID) {
						req = s
					}
				}
			}
			traceID := req.SpanContext.TraceID()
			// The delivery's span ends after the receiver answered.
			var spans []tracetest.SpanStub
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				spans = spansOf(exp.GetSpans(), traceID)
				if named(spans, "webhook.deliver") > 0 || time.Now().After(deadline) {
					break
				}
			}
			for _, name := range []string{"task.run", "executor.execute", "executor.start", "executor.wait", "webhook.deliver"} {
				if named(spans, name) == 0 {
					t.Errorf("no %s span in the create request's trace %s; it has %s", name, traceID, names(spans))
				}
			}
			clients := map[string]bool{} // span ids of the client spans
			for _, s := range spans {
				if s.SpanKind == trace.SpanKindClient {
					clients[s.SpanContext.SpanID().String()] = true
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for _, path := range []string{"/prompt", "/history/", "/view"} {
				var found bool
				for p, parents := range seen {
					if !strings.HasPrefix(p, path) {
						continue
					}
					for _, tp := range parents {
						if len(tp) == 55 && tp[3:35] == traceID.String() {
							found = true
							if !clients[tp[36:52]] {
								t.Errorf("%s carried traceparent %s, which is no client span of the trace", p, tp)
							}
						}
					}
				}
				if !found {
					t.Errorf("no request to %s* carried the trace %s: %v", path, traceID, seen)
				}
			}
			if len(hookParent) != 55 || hookParent[3:35] != traceID.String() || !clients[hookParent[36:52]] {
				t.Errorf("the webhook receiver got traceparent %q, want a client span of trace %s", hookParent, traceID)
			}
			if probes := seen["/system_stats"]; len(probes) > 0 && probes[0] != "" {
				t.Errorf("a health probe, outside any trace, sent traceparent %q", probes[0])
			}
			// The server's execution time (its history's execution_start
			// to execution_success) is the task's service time.
			var got struct {
				Usage struct {
					ProviderSeconds float64 `json:"provider_seconds"`
				}
			}
			if code := call(t, "GET", srv.Base+"/api/v1/tasks/"+created.ID, "", &got); code != 200 || got.Usage.ProviderSeconds <= 0 {
				t.Errorf("GET the task: %d, usage %+v; want the ComfyUI execution's seconds", code, got.Usage)
			}
		})
	}
}

// comfyDir writes a one-template workflows directory and returns its
// parent (the executor's config directory).
func comfyDir(t *testing.T) string {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "wf"), 0o755); err != nil {
		t.Fatal(err)
	}
	graph := `{"1": {"class_type": "EmptyImage", "inputs": {"width": "{{width}}", "height": "{{height}}", "batch_size": 1, "color": 255}},
	           "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "{{prompt}}"}}}`
	if err := os.WriteFile(filepath.Join(dir, "wf", "txt2img.json"), []byte(graph), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// comfySettings are a comfyui executor's settings: one server at url,
// comfyDir's template for generation.
func comfySettings(t *testing.T, url string) json.RawMessage {
	raw, err := json.Marshal(map[string]any{
		"servers":   []map[string]any{{"url": url, "slots": 1}},
		"workflows": "wf", "defaults": map[string]string{"generation": "txt2img"}, "poll_interval": "50ms",
	})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// hasChild reports whether spans hold a child of parent called name with
// task.id taskID.
func hasChild(spans []tracetest.SpanStub, parent tracetest.SpanStub, name, taskID string) bool {
	for _, s := range spans {
		if s.Name == name && s.Parent.SpanID() == parent.SpanContext.SpanID() && attr(s, "task.id") == taskID {
			return true
		}
	}
	return false
}

// spansOf returns the spans of trace id.
func spansOf(spans []tracetest.SpanStub, id trace.TraceID) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range spans {
		if s.SpanContext.TraceID() == id {
			out = append(out, s)
		}
	}
	return out
}

// named counts the spans called name.
func named(spans []tracetest.SpanStub, name string) int {
	n := 0
	for _, s := range spans {
		if s.Name == name {
			n++
		}
	}
	return n
}

// names lists the spans' names.
func names(spans []tracetest.SpanStub) string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = s.Name
	}
	return strings.Join(out, ", ")
}
