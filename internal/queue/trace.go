package queue

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/telemetry"
)

// startRunSpan starts the span of a run of t as a child of the span of
// the request that created t (t.TraceParent). While tracing is off it
// returns ctx and the no-op span.
func startRunSpan(ctx context.Context, t *task.Task) (context.Context, trace.Span) {
	if !telemetry.Enabled() {
		return ctx, trace.SpanFromContext(ctx)
	}
	return telemetry.Start(telemetry.WithTraceParent(ctx, t.TraceParent), "task.run",
		attribute.String("task.id", t.ID.String()), attribute.String("task.type", t.Type),
		attribute.Int("task.attempt", t.Attempt), attribute.String("task.provider", t.ProviderType))
}

// endRunSpan records the run's outcome (outcomeOf's what) on span.
func endRunSpan(span trace.Span, what string, err error) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attribute.String("task.outcome", what))
	if err != nil {
		span.RecordError(err)
		if what == "failed" {
			span.SetStatus(codes.Error, err.Error())
		}
	}
}
