package flows

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluicehq/sluice/state"
)

// Tracing: with Options.TracerProvider set, every run is a span and every
// step attempt a span inside it. A run continues the W3C trace context of
// its input (a message's traceparent metadata, an HTTP request's
// traceparent header); a bucket event starts a new trace. The run's trace
// context goes into the envelope's metadata, so the messages it publishes
// carry it and the runs they start are the same trace. Without a provider
// nothing of this runs: no span, no wrapper.

// Metadata keys of the W3C trace context on messages (the header names).
const (
	MetaTraceparent = "traceparent"
	MetaTracestate  = "tracestate"
)

// tracerName is the instrumentation scope of the engine's spans.
const tracerName = "github.com/sluicehq/sluice/flows"

// Span attributes of runs and steps.
const (
	attrFlow        = attribute.Key("sluice.flow")
	attrTriggerKind = attribute.Key("sluice.trigger.kind")
	attrTrigger     = attribute.Key("sluice.trigger")
	attrRun         = attribute.Key("sluice.run")
	attrInput       = attribute.Key("sluice.input")
	attrParentRun   = attribute.Key("sluice.parent_run")
	attrStatus      = attribute.Key("sluice.status")
	attrAttempts    = attribute.Key("sluice.attempts")
	attrStep        = attribute.Key("sluice.step")
	attrNode        = attribute.Key("sluice.node")
	attrAttempt     = attribute.Key("sluice.attempt")
)

// traceContext is the W3C trace context propagator (traceparent and
// tracestate), which runs read from inputs and write to outputs.
var traceContext propagation.TraceContext

// tracerOf is the engine's tracer, nil when runs are not traced.
func tracerOf(o Options) trace.Tracer {
	if o.TracerProvider == nil {
		return nil
	}
	return o.TracerProvider.Tracer(tracerName)
}

// startRun starts d's run span, a child of the trace context carrier
// holds (nil or empty: a new trace), and records its trace id with the
// run. The run's own context replaces any traceparent in the envelope's
// metadata, so its outputs continue its trace. Only called when tracing.
func (r *runner) startRun(ctx context.Context, d *delivery, carrier propagation.TextMapCarrier, kind trace.SpanKind) {
	if carrier != nil {
		ctx = traceContext.Extract(ctx, carrier)
	}
	attrs := []attribute.KeyValue{attrFlow.String(r.f.Name), attrTriggerKind.String(string(r.f.Trigger.Kind)),
		attrTrigger.String(r.label), attrRun.String(d.run.ID), attrInput.String(d.run.Input)}
	if d.run.Parent != "" {
		attrs = append(attrs, attrParentRun.String(d.run.Parent))
	}
	ctx, d.span = r.tr.Start(ctx, "run "+r.f.Name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
	sc := d.span.SpanContext()
	if sc.IsValid() {
		d.run.TraceID = sc.TraceID().String()
	}
	delete(d.env.Meta, MetaTracestate)
	traceContext.Inject(ctx, propagation.MapCarrier(d.env.Meta))
}

// endRun ends d's run span with the run's status and error, once.
func endRun(d *delivery) {
	s := d.span
	if s == nil {
		return
	}
	d.span = nil
	if d.run.Status != "" { // "": a batch flow's message, its record in a batch
		s.SetAttributes(attrStatus.String(d.run.Status), attrAttempts.Int(d.run.Attempts))
	}
	if d.run.Status == state.StatusFailed || d.run.Status == state.StatusDeadLettered {
		if d.run.Step != "" {
			s.SetAttributes(attrStep.String(d.run.Step))
		}
		s.SetStatus(codes.Error, d.run.Error)
	}
	s.End()
}

// traceStep makes each attempt of a step a span, a child of the run's.
// It sits inside retryStep, so every attempt has its own span.
func (r *runner) traceStep(next handler) handler {
	return func(ctx context.Context, c *call) error {
		ctx, span := r.tr.Start(ctx, "step "+c.step.ID, trace.WithAttributes(
			attrFlow.String(r.f.Name), attrStep.String(c.step.ID), attrNode.String(c.step.Type), attrAttempt.Int(c.tries)))
		err := next(ctx, c)
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
		return err
	}
}

// setTraceMeta copies the run's trace context from the envelope's
// metadata to an output message's, replacing the output's own.
func setTraceMeta(dst, envMeta map[string]string) {
	tp, ok := envMeta[MetaTraceparent]
	if !ok {
		return
	}
	dst[MetaTraceparent] = tp
	if ts := envMeta[MetaTracestate]; ts != "" {
		dst[MetaTracestate] = ts
	} else {
		delete(dst, MetaTracestate)
	}
}
