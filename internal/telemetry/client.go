package telemetry

import (
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// StartClient starts a client span for the outbound request req (named
// by its method; the host, not the URL, which may carry secrets, is an
// attribute) and puts its traceparent in req's header. end records the
// answer's status (0 when there is none) or err and ends the span. While
// tracing is off it returns req and a no-op end.
func StartClient(req *http.Request) (out *http.Request, end func(status int, err error)) {
	if !Enabled() {
		return req, func(int, error) {}
	}
	ctx, span := Tracer().Start(req.Context(), req.Method, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("http.request.method", req.Method), attribute.String("server.address", req.URL.Host)))
	req = req.WithContext(ctx)
	propagator.Inject(ctx, propagation.HeaderCarrier(req.Header))
	return req, func(status int, err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		} else {
			span.SetAttributes(attribute.Int("http.response.status_code", status))
			if status >= 500 {
				span.SetStatus(codes.Error, http.StatusText(status))
			}
		}
		span.End()
	}
}
