package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	obs "github.com/cloudevents/sdk-go/observability/opentelemetry/v2/client"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/extensions"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"council.dev/events"
	"council.dev/shared/council"
)

// Handler is a function's event handler: the same type as natsjs.Handler
// and host.Handler.
type Handler = func(ctx context.Context, ev event.Event) (*event.Event, error)

// Outcomes of a handled event (the outcome label).
const (
	OutcomeOK       = "ok"       // handled, no reply
	OutcomeReplied  = "replied"  // handled, with a reply event
	OutcomeRetry    = "retry"    // transient error: the event comes again
	OutcomeRejected = "rejected" // permanent error: dead letter / 4xx
)

// propagator is the W3C trace context, carried in the CloudEvents
// distributed-tracing extension.
var propagator = propagation.TraceContext{}

// Extract returns ctx with the remote span context of ev's
// distributed-tracing extension, when it has a valid one.
func Extract(ctx context.Context, ev event.Event) context.Context {
	var tp, ts string
	switch ec := ev.Context.(type) {
	case *event.EventContextV1:
		// The map itself: Extensions() copies it, GetExtension builds an
		// error for an absent one.
		tp, _ = ec.Extensions[extensions.TraceParentExtension].(string)
		ts, _ = ec.Extensions[extensions.TraceStateExtension].(string)
	case nil:
	default:
		tp, _ = ev.Extensions()[extensions.TraceParentExtension].(string)
		ts, _ = ev.Extensions()[extensions.TraceStateExtension].(string)
	}
	if tp == "" {
		return ctx
	}
	return propagator.Extract(ctx, obs.CloudEventCarrier{Extension: &extensions.DistributedTracingExtension{TraceParent: tp, TraceState: ts}})
}

// Inject sets ev's distributed-tracing extension to the span context of
// ctx; it leaves ev alone when ctx has none.
func Inject(ctx context.Context, ev *event.Event) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	c := obs.NewCloudEventCarrier()
	propagator.Inject(ctx, c)
	c.Extension.AddTracingAttributes(ev)
}

// injectEnvelope sets e's trace context from ctx unless it has one.
func injectEnvelope(ctx context.Context, e *council.Envelope) {
	if e.TraceParent != "" || !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	c := obs.NewCloudEventCarrier()
	propagator.Inject(ctx, c)
	e.TraceParent, e.TraceState = c.Extension.TraceParent, c.Extension.TraceState
}

// Handler wraps h: each event continues the trace of its distributed-
// tracing extension in a consumer span "process <type>", the reply event
// carries the span's context on, and the event is counted by type and
// outcome with its latency.
func (t *Telemetry) Handler(h Handler) Handler {
	if t == nil {
		return h
	}
	return func(ctx context.Context, ev event.Event) (*event.Event, error) {
		start := time.Now()
		typ := shortType(ev.Type())
		ctx = Extract(ctx, ev)
		ctx, span := t.start(ctx, "process "+typ, trace.SpanKindConsumer)
		if span.IsRecording() {
			span.SetAttributes(
				semconv.MessagingOperationTypeProcess,
				semconv.MessagingOperationName("process"),
				semconv.MessagingConsumerGroupName(t.function),
				semconv.MessagingMessageID(ev.ID()),
				semconv.CloudEventsEventID(ev.ID()),
				semconv.CloudEventsEventType(ev.Type()),
				semconv.CloudEventsEventSource(ev.Source()),
				semconv.CloudEventsEventSubject(ev.Subject()),
			)
			w := work(ev)
			span.SetAttributes(w.attributes()...)
			if w.agent.ID != "" {
				ctx = context.WithValue(ctx, agentKey{}, w.agent)
			}
		}
		reply, err := h(ctx, ev)
		outcome := OutcomeOK
		switch {
		case err != nil && council.Retryable(err):
			outcome = OutcomeRetry
		case err != nil:
			outcome = OutcomeRejected
		case reply != nil:
			outcome = OutcomeReplied
			Inject(ctx, reply)
		}
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
			span.SetAttributes(semconv.ErrorTypeKey.String(errorType(err)))
		}
		span.SetAttributes(attribute.String("council.outcome", outcome))
		span.End()
		set := t.set("type", typ, "outcome", outcome)
		t.m.handled.Add(ctx, 1, set)
		t.m.handlerDur.Record(ctx, time.Since(start).Seconds(), set)
		return reply, err
	}
}

// agentKey holds, in a handler's context, the agent whose work the event
// asks for: the LLM calls it makes are that agent's (gen_ai.agent.*).
type agentKey struct{}

type agent struct{ ID, Role string }

// workInfo is what a span tells of a work event (read only when the span
// is recorded).
type workInfo struct {
	DeliberationID string `json:"deliberation_id"`
	Key            string `json:"key"`
	Attempt        int    `json:"attempt"`
	Stage          int    `json:"stage"`
	Agent          *agent `json:"agent"`
	Reviewer       *agent `json:"reviewer"`
	agent          agent
}

func (a *agent) UnmarshalJSON(b []byte) error {
	var v struct {
		ID   string `json:"id"`
		Role string `json:"role"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	a.ID, a.Role = v.ID, v.Role
	return nil
}

// work reads the ids of ev's data; a type without them, or data that does
// not decode, gives the zero value (the handler says what is wrong).
func work(ev event.Event) workInfo {
	var w workInfo
	switch ev.Type() {
	case events.TypeProposalRequested, events.TypeCritiqueRequested,
		events.TypeProposalGenerated, events.TypeProposalFailed,
		events.TypeCritiqueCompleted, events.TypeCritiqueFailed,
		events.TypeDeliberationCompleted, events.TypeDeliberationFailed, events.TypeDeliberationAccepted:
		_ = json.Unmarshal(ev.Data(), &w)
	}
	switch {
	case w.Reviewer != nil:
		w.agent = *w.Reviewer
	case w.Agent != nil:
		w.agent = *w.Agent
	}
	return w
}

func (w workInfo) attributes() []attribute.KeyValue {
	var a []attribute.KeyValue
	if w.DeliberationID != "" {
		a = append(a, attribute.String("council.deliberation.id", w.DeliberationID))
	}
	if w.Key != "" {
		a = append(a, attribute.String("council.work.key", w.Key),
			attribute.Int("council.work.attempt", w.Attempt), attribute.Int("council.work.stage", w.Stage))
	}
	if w.agent.ID != "" {
		a = append(a, semconv.GenAIAgentID(w.agent.ID), semconv.GenAIAgentName(agentName(w.agent)))
	}
	return a
}

// agentName is the agent's role, or its id when it has none.
func agentName(a agent) string {
	if a.Role != "" {
		return a.Role
	}
	return a.ID
}

// errorType names the class of err for error.type.
func errorType(err error) string {
	for _, c := range []struct {
		err  error
		name string
	}{
		{council.ErrInvalid, "invalid"}, {council.ErrNotFound, "not_found"}, {council.ErrConflict, "conflict"},
		{council.ErrTooLarge, "too_large"}, {council.ErrUnavailable, "unavailable"},
	} {
		if errors.Is(err, c.err) {
			return c.name
		}
	}
	return "_OTHER"
}
