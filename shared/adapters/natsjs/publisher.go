package natsjs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/events"
	"council.dev/shared/council"
)

// ContentTypeCloudEventsJSON is the content type of a structured CloudEvent
// in JSON; published messages carry it in their Content-Type header.
const ContentTypeCloudEventsJSON = events.ContentTypeStructured

// Publisher publishes CloudEvents to the broker stream. It is safe for
// concurrent use.
type Publisher struct {
	js       jetstream.JetStream
	topo     Topology
	now      func() time.Time
	logger   *slog.Logger
	observer Observer
}

var _ council.Emitter = (*Publisher)(nil)

// NewPublisher returns a Publisher that publishes through js. Options:
// WithTopology, WithLogger, WithClock, WithObserver.
func NewPublisher(js jetstream.JetStream, opts ...Option) (*Publisher, error) {
	if js == nil {
		return nil, errors.New("natsjs: new publisher: nil JetStream")
	}
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	return &Publisher{js: js, topo: o.topology, now: o.now, logger: o.logger, observer: o.observer}, nil
}

// Emit publishes e as a structured CloudEvent (specversion 1.0, id e.ID,
// datacontenttype application/json, data e.Data) on the subject of its type,
// with e.ID as Nats-Msg-Id. A zero e.Time is replaced by the clock's time.
//
// Emitting an ID again within the stream's duplicate window is not an error;
// the broker keeps the first message only. Emit returns an error wrapping
// council.ErrInvalid when e lacks an ID, type or source, or its data is not
// JSON, and one wrapping council.ErrUnavailable when the broker does not
// acknowledge the event.
func (p *Publisher) Emit(ctx context.Context, e council.Envelope) error {
	if e.Time.IsZero() {
		e.Time = p.now()
	}
	ev, err := events.CheckedEvent(e)
	if err != nil {
		return fmt.Errorf("natsjs: emit %s: %w", e.Type, err)
	}
	return p.PublishEvent(ctx, ev)
}

var _ council.Timer = (*Publisher)(nil)

// At has the broker publish e, as Emit would, at time at (rounded up to the
// second): a JetStream message schedule ("@at") on the schedule subject of
// e's subject (ScheduleSubject), whose target is the subject of e's type.
// The schedule is durable: it fires whether or not the sender runs then. A
// later At for the same subject replaces it; the same envelope ID again is
// dropped as a duplicate. Errors wrap council.ErrInvalid (an envelope
// without a subject, or not a valid event) or council.ErrUnavailable.
func (p *Publisher) At(ctx context.Context, at time.Time, e council.Envelope) error {
	if e.Subject == "" || !validSubject(p.topo.ScheduleSubject(e.Subject)) {
		return fmt.Errorf("natsjs: timer %s: %w", e.ID, council.Invalidf("a timer needs a subject-safe CloudEvents subject, got %q", e.Subject))
	}
	ev, err := events.CheckedEvent(e)
	if err != nil {
		return fmt.Errorf("natsjs: timer %s: %w", e.ID, err)
	}
	body, err := events.EncodeStructured(ev)
	if err != nil {
		return fmt.Errorf("natsjs: timer %s: %w", e.ID, err)
	}
	msg := &nats.Msg{Subject: p.topo.ScheduleSubject(e.Subject), Data: body, Header: nats.Header{}}
	msg.Header.Set("Content-Type", ContentTypeCloudEventsJSON)
	setTraceHeaders(msg.Header, ev)
	// RFC 3339 has whole seconds here: round up, never fire early.
	msg.Header.Set("Nats-Schedule", "@at "+at.UTC().Add(time.Second-1).Truncate(time.Second).Format(time.RFC3339))
	msg.Header.Set("Nats-Schedule-Target", p.topo.EventSubject(e.Type))
	msg.Header.Set("Nats-Rollup", "sub") // one timer per subject: the newest replaces the older
	if _, err := p.js.PublishMsg(ctx, msg, jetstream.WithMsgID(e.ID)); err != nil {
		return fmt.Errorf("natsjs: timer %s: %w: %w", e.ID, council.ErrUnavailable, err)
	}
	return nil
}

// offload puts the data of ev in the bodies object store, under the
// event's id (a re-sent event writes the same object again), and returns
// the encoded event without its data, with a dataref to the object.
func (p *Publisher) offload(ctx context.Context, ev event.Event) ([]byte, error) {
	obs, err := p.js.ObjectStore(ctx, p.topo.BodiesBucket)
	if err != nil {
		return nil, fmt.Errorf("claim check: object store %s: %w: %w", p.topo.BodiesBucket, council.ErrUnavailable, err)
	}
	if _, err := obs.PutBytes(ctx, ev.ID(), ev.Data()); err != nil {
		return nil, fmt.Errorf("claim check: put %s: %w: %w", ev.ID(), council.ErrUnavailable, err)
	}
	p.logger.DebugContext(ctx, "event data sent by reference", "event_id", ev.ID(), "type", ev.Type(), "bytes", len(ev.Data()))
	return events.EncodeStructured(events.Offload(ev, events.DataRef(p.topo.BodiesBucket, ev.ID())))
}

// Resolve returns ev with its data when it was sent by reference (the
// dataref of events.Offload), fetched from the object store; ev as it is
// otherwise. An object that is gone is an error wrapping
// council.ErrInvalid (it will not come back); others wrap
// council.ErrUnavailable.
func Resolve(ctx context.Context, js jetstream.JetStream, ev event.Event) (event.Event, error) {
	ref, ok := events.OffloadedRef(ev)
	if !ok {
		return ev, nil
	}
	bucket, object, err := events.ParseDataRef(ref)
	if err != nil {
		return event.Event{}, err
	}
	obs, err := js.ObjectStore(ctx, bucket)
	if err != nil {
		return event.Event{}, fmt.Errorf("natsjs: resolve %s: object store %s: %w: %w", ev.ID(), bucket, council.ErrUnavailable, err)
	}
	data, err := obs.GetBytes(ctx, object)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return event.Event{}, fmt.Errorf("natsjs: resolve %s: %w", ev.ID(), council.Invalidf("the data of %s is gone from %s", ref, bucket))
	}
	if err != nil {
		return event.Event{}, fmt.Errorf("natsjs: resolve %s: %w: %w", ev.ID(), council.ErrUnavailable, err)
	}
	return events.Restore(ev, data), nil
}

// PublishEvent publishes ev as a structured CloudEvent on the subject of its
// type, with its id as Nats-Msg-Id. It returns an error wrapping
// council.ErrInvalid when ev is not a valid CloudEvent or its type is not a
// valid subject, one wrapping council.ErrTooLarge when the broker refuses
// it for its size, and otherwise the broker's error classified by
// natserr.Classify: council.ErrUnavailable when it does not acknowledge the
// event.
func (p *Publisher) PublishEvent(ctx context.Context, ev event.Event) error {
	if err := ev.Validate(); err != nil {
		return fmt.Errorf("natsjs: publish %s: %w: %w", ev.Type(), council.ErrInvalid, err)
	}
	subject := p.topo.EventSubject(ev.Type())
	if !validSubject(subject) {
		return fmt.Errorf("natsjs: publish %s: %w", ev.Type(), council.Invalidf("type %q is not a subject-safe name", ev.Type()))
	}
	body, err := events.EncodeStructured(ev)
	if err != nil {
		return fmt.Errorf("natsjs: publish %s: %w", ev.Type(), err)
	}
	if limit := p.js.Conn().MaxPayload(); limit > 0 && int64(len(body)) > limit-1024 {
		// The claim check: the data goes to the object store, the event
		// with a dataref to it.
		if body, err = p.offload(ctx, ev); err != nil {
			return fmt.Errorf("natsjs: publish %s: %w", ev.Type(), err)
		}
		if int64(len(body)) > limit-1024 {
			return fmt.Errorf("natsjs: publish %s: %w", ev.Type(), council.TooLargef(
				"event %s is %d bytes without its data, more than the broker takes (max_payload %d bytes, less 1 KiB of headers)",
				ev.ID(), len(body), limit))
		}
	}
	msg := &nats.Msg{Subject: subject, Data: body, Header: nats.Header{}}
	msg.Header.Set("Content-Type", ContentTypeCloudEventsJSON)
	setTraceHeaders(msg.Header, ev)
	ack, err := p.js.PublishMsg(ctx, msg, jetstream.WithMsgID(ev.ID()))
	if err != nil {
		return fmt.Errorf("natsjs: publish %s: %w", ev.Type(), classify(err))
	}
	if ack.Duplicate {
		if p.observer != nil {
			p.observer.Duplicate(ctx, ev.Type())
		}
		p.logger.DebugContext(ctx, "duplicate event dropped by the broker",
			"event_id", ev.ID(), "type", ev.Type(), "stream", ack.Stream, "seq", ack.Sequence)
	}
	return nil
}
