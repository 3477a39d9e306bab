package webhook

import (
	"context"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/telemetry"
)

// startDeliverSpan starts the span of one attempt of dl, webhook.deliver,
// in the trace of dl's task (the traceparent its create request left on
// the task row): a child of that request's span, beside the task's runs.
// A workflow's delivery has no stored trace and starts one of its own.
// While tracing is off it returns ctx and the no-op span.
func startDeliverSpan(ctx context.Context, dl store.Delivery) (context.Context, trace.Span) {
	if !telemetry.Enabled() {
		return ctx, trace.SpanFromContext(ctx)
	}
	return telemetry.Start(telemetry.WithTraceParent(ctx, dl.TraceParent), "webhook.deliver",
		attribute.Int64("webhook.delivery_id", dl.ID), attribute.Int64("webhook.event_id", dl.EventID),
		attribute.String("webhook.event_type", dl.EventType), attribute.String("task.id", dl.TaskID.String()),
		attribute.Int("webhook.attempt", dl.Attempts), attribute.String("server.address", dl.Destination))
}

// endDeliverSpan records the attempt's answer and the delivery's next
// status on span and ends it.
func endDeliverSpan(span trace.Span, r result, o store.DeliveryOutcome) {
	defer span.End()
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attribute.String("webhook.outcome", string(o.Status)))
	if r.code != 0 {
		span.SetAttributes(attribute.Int("http.response.status_code", r.code))
	}
	if r.code < 200 || r.code >= 300 {
		msg := r.err
		if msg == "" {
			msg = "answered " + strconv.Itoa(r.code)
		}
		span.SetStatus(codes.Error, msg)
	}
}
