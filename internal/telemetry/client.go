package telemetry

import (
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Transport returns next (http.DefaultTransport when nil) wrapped so that
// every request made within a traced operation (its context carries a
// span) gets a client span, a child of that span, and carries the span's
// W3C traceparent to the server. The span is named by the method; the
// host, not the URL, which may carry secrets, is an attribute; it covers
// the call up to the answer's header. Requests outside a traced operation
// (health probes) and every request while tracing is off go to next
// untouched, at the cost of one check.
func Transport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	if _, ok := next.(*transport); ok {
		return next // wrapped already: one span per call
	}
	return &transport{next: next}
}

// WrapClient returns a copy of c (a new client when nil) whose transport
// is Transport(c's).
func WrapClient(c *http.Client) *http.Client {
	out := &http.Client{}
	if c != nil {
		*out = *c
	}
	out.Transport = Transport(out.Transport)
	return out
}

// transport is Transport's RoundTripper.
type transport struct{ next http.RoundTripper }

// RoundTrip implements http.RoundTripper.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !Enabled() || !trace.SpanContextFromContext(req.Context()).IsValid() {
		return t.next.RoundTrip(req)
	}
	ctx, span := Tracer().Start(req.Context(), req.Method, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("http.request.method", req.Method), attribute.String("server.address", req.URL.Host)))
	defer span.End()
	// A RoundTripper must not change the request it is given: the header
	// goes on a copy.
	out := req.Clone(ctx)
	propagator.Inject(ctx, propagation.HeaderCarrier(out.Header))
	resp, err := t.next.RoundTrip(out)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return resp, err
	}
	span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	if resp.StatusCode >= 500 {
		span.SetStatus(codes.Error, http.StatusText(resp.StatusCode))
	}
	return resp, nil
}

// CloseIdleConnections passes the call to the wrapped transport, so a
// client's CloseIdleConnections still reaches it.
func (t *transport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
