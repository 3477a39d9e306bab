package app_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/telemetry"
	"github.com/computeserver/compute/internal/testutil/logbuf"
	"github.com/computeserver/compute/internal/testutil/testdb"
	"github.com/computeserver/compute/internal/testutil/testserver"
)

// TestCreateAndRunShareATrace: with tracing on, the create request's
// server span and the run of the task it created (in a worker process,
// through the trace context stored on the task row) are one trace: the
// run's span is a child of the request's, the executor's calls children
// of the run's.
func TestCreateAndRunShareATrace(t *testing.T) {
	exp := installTracing(t)
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			cfg := testserver.Config(t, dialect, key)
			api := cfg
			api.Workers = 0
			srv := testserver.Start(t, api, app.Options{Version: "test"}, testdb.Logger(t))
			var logs logbuf.Buffer
			testserver.Start(t, cfg, app.Options{Workers: true, NoAPI: true, Version: "test"}, logs.Logger())

			var created struct{ ID string }
			if code := call(t, "POST", srv.Base+"/api/v1/tasks/", `{"task_type":"generation","prompt":"a dress","width":64,"height":64}`, &created); code != 201 {
				t.Fatalf("create: %d", code)
			}
			var req, run tracetest.SpanStub
			var executorSpans int
			for deadline := time.Now().Add(30 * time.Second); run.Name == ""; time.Sleep(50 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("no task.run span for task %s", created.ID)
				}
				for _, s := range exp.GetSpans() {
					if s.Name == "task.run" && attr(s, "task.id") == created.ID {
						run = s
					}
				}
			}
			for _, s := range exp.GetSpans() {
				if s.SpanContext.SpanID() == run.Parent.SpanID() {
					req = s
				}
			}
			if req.Name != "POST /api/v1/tasks/" {
				t.Fatalf("the run's parent span is %q, want the create request's (POST /api/v1/tasks/)", req.Name)
			}
			if req.SpanContext.TraceID() != run.SpanContext.TraceID() {
				t.Fatalf("trace ids differ: request %s, run %s", req.SpanContext.TraceID(), run.SpanContext.TraceID())
			}
			for _, s := range exp.GetSpans() {
				if s.SpanContext.TraceID() == run.SpanContext.TraceID() && (s.Name == "executor.start" || s.Name == "executor.wait" || s.Name == "executor.execute") {
					executorSpans++
				}
			}
			if executorSpans == 0 {
				t.Errorf("no executor spans in the run's trace %s", run.SpanContext.TraceID())
			}
			want := "trace_id=" + run.SpanContext.TraceID().String()
			if !strings.Contains(logs.String(), want) {
				t.Errorf("the run's log lines lack %s:\n%s", want, logs.String())
			}
		})
	}
}

// attr returns the string attribute key of s, or "".
func attr(s tracetest.SpanStub, key string) string {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value.AsString()
		}
	}
	return ""
}

// installTracing turns tracing on for the process with an in-memory
// exporter, once: the tests that read spans share it (the others only make
// more spans).
func installTracing(t *testing.T) *tracetest.InMemoryExporter {
	t.Helper()
	tracing.once.Do(func() {
		tracing.exp = tracetest.NewInMemoryExporter()
		telemetry.Install(sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracing.exp)))
	})
	return tracing.exp
}

// tracing is the process's in-memory exporter (installTracing).
var tracing struct {
	once sync.Once
	exp  *tracetest.InMemoryExporter
}
