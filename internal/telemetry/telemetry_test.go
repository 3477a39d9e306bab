package telemetry_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/computeserver/compute/internal/telemetry"
)

// TestSetupExportsOverOTLPHTTP: off without the OTEL_* variables (no
// traceparent, the handler runs untouched); with OTEL_EXPORTER_OTLP_ENDPOINT
// a request's span reaches an OTLP/HTTP receiver on loopback, with the
// service name of OTEL_SERVICE_NAME, and the traceparent a create stores
// names that span's trace.
func TestSetupExportsOverOTLPHTTP(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	var stored string
	h := telemetry.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		telemetry.NameSpan(r.Context(), r.Method, "/api/v1/tasks/")
		stored = telemetry.TraceParent(r.Context())
		w.WriteHeader(http.StatusCreated)
	}))
	shutdown, err := telemetry.Setup(t.Context(), "compute")
	if err != nil {
		t.Fatal(err)
	}
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/api/v1/tasks/", nil))
	if telemetry.Enabled() || stored != "" {
		t.Fatalf("tracing off: enabled %v, traceparent %q", telemetry.Enabled(), stored)
	}
	_ = shutdown(t.Context())

	var (
		mu  sync.Mutex
		got []*coltrace.ExportTraceServiceRequest
	)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := &coltrace.ExportTraceServiceRequest{}
		if r.URL.Path != "/v1/traces" || proto.Unmarshal(body, req) != nil {
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, req)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	defer rcv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.URL)
	t.Setenv("OTEL_SERVICE_NAME", "compute-test")
	shutdown, err = telemetry.Setup(t.Context(), "compute")
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("POST", "/api/v1/tasks/", nil)
	req.Header.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	h.ServeHTTP(httptest.NewRecorder(), req)
	if err := shutdown(t.Context()); err != nil { // flushes
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	var service, name, traceID string
	for _, r := range got {
		for _, rs := range r.ResourceSpans {
			for _, a := range rs.Resource.Attributes {
				if a.Key == "service.name" {
					service = a.Value.GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					name = s.Name
					traceID = hexID(s.TraceId)
				}
			}
		}
	}
	if service != "compute-test" || name != "POST /api/v1/tasks/" {
		t.Fatalf("exported service %q span %q, want compute-test, POST /api/v1/tasks/", service, name)
	}
	if traceID != "0af7651916cd43dd8448eb211c80319c" {
		t.Errorf("span trace id %s, want the caller's", traceID)
	}
	if want := "00-" + traceID + "-"; len(stored) != 55 || stored[:36] != want {
		t.Errorf("stored traceparent %q, want one of trace %s", stored, traceID)
	}
}

func hexID(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// TestClientSpanCarriesTheTrace: an outbound call made through
// Transport while serving a request gets a client span of the request's
// trace, and the service called gets that trace's traceparent; a call
// made outside any trace gets neither, and the caller's request is never
// changed. (After TestSetupExportsOverOTLPHTTP, which needs tracing off
// at its start.)
func TestClientSpanCarriesTheTrace(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	telemetry.Install(sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)))
	var mu sync.Mutex
	var got []string
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, r.Header.Get("traceparent"))
	}))
	defer upstream.Close()
	client := telemetry.WrapClient(telemetry.WrapClient(nil)) // wrapping twice makes one span per call
	call := func(req *http.Request) {
		resp, err := client.Do(req)
		if err != nil {
			t.Error(err)
			return
		}
		resp.Body.Close()
	}
	var serverTrace string
	var sent *http.Request
	h := telemetry.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serverTrace = telemetry.TraceID(r.Context())
		sent, _ = http.NewRequestWithContext(r.Context(), "GET", upstream.URL, nil)
		call(sent)
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	untraced, _ := http.NewRequest("GET", upstream.URL, nil)
	call(untraced)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || serverTrace == "" || len(got[0]) != 55 || got[0][3:35] != serverTrace {
		t.Fatalf("upstream got traceparents %q, want one of the request's trace %q first", got, serverTrace)
	}
	if got[1] != "" {
		t.Errorf("a call outside any trace sent traceparent %q", got[1])
	}
	if sent.Header.Get("traceparent") != "" {
		t.Errorf("the transport changed the caller's request: %v", sent.Header)
	}
	var spans int
	for _, s := range exp.GetSpans() {
		if s.SpanKind == trace.SpanKindClient {
			spans++
			if s.SpanContext.TraceID().String() != serverTrace {
				t.Errorf("client span %q in trace %s, want the request's %s", s.Name, s.SpanContext.TraceID(), serverTrace)
			}
		}
	}
	if spans != 1 {
		t.Errorf("%d client spans, want 1", spans)
	}
}
