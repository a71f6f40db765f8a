package natsjs

import (
	"context"
	"errors"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"council.dev/events"
)

// Observer is told what the JetStream transport sees and a handler does
// not, for metrics: the queue behind each message a consumer receives and
// the events the broker drops as duplicates. Its methods must be cheap and
// safe for concurrent use. The telemetry package's Telemetry is one.
type Observer interface {
	// Pending reports, for each message consumer receives, how many
	// messages matching its filter were still waiting behind it (the
	// consumer's NumPending: its queue lag).
	Pending(ctx context.Context, consumer string, pending uint64)
	// Duplicate reports an event of eventType that the broker dropped as a
	// duplicate of one it holds (same Nats-Msg-Id within the duplicate
	// window): a re-sent event, counted once.
	Duplicate(ctx context.Context, eventType string)
}

// WithObserver has a Publisher and a Consumer report to o (queue lag,
// duplicates dropped). Default: none.
func WithObserver(o Observer) Option {
	return func(opts *options) error {
		if o == nil {
			return errors.New("WithObserver: nil observer")
		}
		opts.observer = o
		return nil
	}
}

// The W3C trace context headers. A published event's distributed-tracing
// extension (events.ExtTraceParent, events.ExtTraceState, inside the
// structured CloudEvent) is also set as these NATS headers, so that tools
// reading headers only (nats CLI, a NATS-aware tracer) see the trace.
const (
	HeaderTraceParent = "traceparent"
	HeaderTraceState  = "tracestate"
)

// setTraceHeaders copies the trace context of ev, if any, to h.
func setTraceHeaders(h nats.Header, ev event.Event) {
	ext := ev.Extensions()
	if tp, ok := ext[events.ExtTraceParent].(string); ok && tp != "" {
		h.Set(HeaderTraceParent, tp)
		if ts, ok := ext[events.ExtTraceState].(string); ok && ts != "" {
			h.Set(HeaderTraceState, ts)
		}
	}
}

// traceFromHeaders gives ev the trace context of h when ev carries none
// (a producer that set only the NATS headers).
func traceFromHeaders(h nats.Header, ev *event.Event) {
	if _, ok := ev.Extensions()[events.ExtTraceParent]; ok {
		return
	}
	if tp := h.Get(HeaderTraceParent); tp != "" {
		ev.SetExtension(events.ExtTraceParent, tp)
		if ts := h.Get(HeaderTraceState); ts != "" {
			ev.SetExtension(events.ExtTraceState, ts)
		}
	}
}
