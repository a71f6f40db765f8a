package telemetry

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/trace"

	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"

	"council.dev/shared/council"
)

// Emitter wraps e: each event sent is a producer span "send <type>" whose
// context the event carries (Envelope.TraceParent, the CloudEvents
// distributed-tracing extension on the wire), so that its handler continues
// the trace. An envelope that has a trace context already keeps it.
func (t *Telemetry) Emitter(e council.Emitter) council.Emitter {
	if t == nil || e == nil {
		return e
	}
	return &emitter{next: e, t: t}
}

type emitter struct {
	next council.Emitter
	t    *Telemetry
}

func (e *emitter) Emit(ctx context.Context, env council.Envelope) error {
	ctx, span := e.t.send(ctx, env)
	injectEnvelope(ctx, &env)
	err := e.next.Emit(ctx, env)
	end(span, err)
	return err
}

// Timer wraps tm as Emitter wraps an Emitter: the event fired later
// continues the trace of the one that set the timer.
func (t *Telemetry) Timer(tm council.Timer) council.Timer {
	if t == nil || tm == nil {
		return tm
	}
	return &timer{next: tm, t: t}
}

type timer struct {
	next council.Timer
	t    *Telemetry
}

func (tm *timer) At(ctx context.Context, at time.Time, env council.Envelope) error {
	ctx, span := tm.t.send(ctx, env)
	injectEnvelope(ctx, &env)
	err := tm.next.At(ctx, at, env)
	end(span, err)
	return err
}

func (t *Telemetry) send(ctx context.Context, env council.Envelope) (context.Context, trace.Span) {
	ctx, span := t.start(ctx, "send "+shortType(env.Type), trace.SpanKindProducer)
	if span.IsRecording() {
		span.SetAttributes(
			semconv.MessagingOperationTypeSend,
			semconv.MessagingOperationName("send"),
			semconv.MessagingMessageID(env.ID),
			semconv.CloudEventsEventID(env.ID),
			semconv.CloudEventsEventType(env.Type),
			semconv.CloudEventsEventSubject(env.Subject),
		)
	}
	return ctx, span
}
