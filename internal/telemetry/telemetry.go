// Package telemetry holds the server's OpenTelemetry tracing: an OTLP/HTTP
// exporter configured by the standard OTEL_* variables, enabled only when
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_TRACES_EXPORTER is set; otherwise the
// global tracer stays OpenTelemetry's no-op one and the HTTP middleware
// passes requests through untouched.
package telemetry

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// scope names the instrumentation in the spans it makes.
const scope = "github.com/computeserver/compute"

// traceParentHeader is the W3C Trace Context header.
const traceParentHeader = "traceparent"

var (
	enabled    atomic.Bool
	propagator = propagation.TraceContext{}
)

// Enabled reports whether tracing is on (Setup found an exporter, or a
// test installed a provider).
func Enabled() bool { return enabled.Load() }

// Configured reports whether the environment asks for traces:
// OTEL_EXPORTER_OTLP_ENDPOINT (or its traces variant) is set, or
// OTEL_TRACES_EXPORTER is set to something other than "none".
func Configured() bool {
	if v := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")); v != "" {
		return v != "none"
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Setup installs an OTLP/HTTP trace exporter when Configured, with the
// service name of OTEL_SERVICE_NAME (default service, "compute"); the
// exporter reads the other OTEL_EXPORTER_OTLP_* variables itself. The
// returned shutdown flushes the spans still queued; it is a no-op when
// tracing is off.
func Setup(ctx context.Context, service string) (shutdown func(context.Context) error, err error) {
	noop := func(context.Context) error { return nil }
	if !Configured() {
		return noop, nil
	}
	if v := os.Getenv("OTEL_TRACES_EXPORTER"); v != "" && v != "otlp" {
		return noop, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: only otlp (or none) is supported", v)
	}
	if p := os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL"); p != "" && p != "http/protobuf" {
		return noop, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: only http/protobuf is supported", p)
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return noop, fmt.Errorf("otlp trace exporter: %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", serviceName(service))))
	if err != nil {
		res = resource.Default()
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	Install(tp)
	return tp.Shutdown, nil
}

// serviceName is OTEL_SERVICE_NAME, else fallback, else "compute".
func serviceName(fallback string) string {
	if v := os.Getenv("OTEL_SERVICE_NAME"); v != "" {
		return v
	}
	if fallback != "" {
		return fallback
	}
	return "compute"
}

// Install makes tp the global tracer provider and turns tracing on (Setup
// calls it; tests pass a provider with an in-memory exporter).
func Install(tp trace.TracerProvider) {
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagator)
	enabled.Store(true)
}

// Tracer returns the server's tracer (the no-op one while tracing is off).
func Tracer() trace.Tracer { return otel.Tracer(scope) }

// Start starts a span named name as a child of ctx's span. While tracing
// is off it returns ctx and the no-op span at no cost.
func Start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if !Enabled() {
		return ctx, trace.SpanFromContext(ctx)
	}
	return Tracer().Start(ctx, name, trace.WithAttributes(attrs...))
}

// TraceParent returns the W3C traceparent of ctx's span, or "" when it has
// none (tracing off).
func TraceParent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	c := propagation.MapCarrier{}
	propagator.Inject(ctx, c)
	return c[traceParentHeader]
}

// WithTraceParent returns ctx carrying the remote span context of the W3C
// traceparent tp, so spans started from it join that trace; ctx itself
// when tp is "" or malformed, or tracing is off.
func WithTraceParent(ctx context.Context, tp string) context.Context {
	if tp == "" || !Enabled() {
		return ctx
	}
	return propagator.Extract(ctx, propagation.MapCarrier{traceParentHeader: tp})
}

// TraceID returns ctx's trace id in hex, or "" when ctx has no span.
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}

// Middleware starts a server span per request, continuing the caller's
// trace context (a traceparent header). The span is named by the method
// until the route renames it (NameSpan). While tracing is off it returns
// next itself.
func Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !Enabled() {
			next.ServeHTTP(w, r)
			return
		}
		ctx := propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := Tracer().Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)))
		defer span.End()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r.WithContext(ctx))
		span.SetAttributes(attribute.Int("http.response.status_code", sw.status))
		if sw.status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(sw.status))
		}
	})
}

// NameSpan names ctx's server span after the matched route, e.g.
// "POST /v1/tasks" (low cardinality, unlike the path).
func NameSpan(ctx context.Context, method, route string) {
	if !Enabled() {
		return
	}
	span := trace.SpanFromContext(ctx)
	span.SetName(method + " " + route)
	span.SetAttributes(attribute.String("http.route", route))
}

// statusWriter records the response status for the span.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the underlying writer
// (flushes of the event streams, deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush passes a flush through (the event streams flush per event).
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
