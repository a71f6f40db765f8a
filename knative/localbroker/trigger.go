package localbroker

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	eventingv1 "knative.dev/eventing/pkg/apis/eventing/v1"
	"knative.dev/eventing/pkg/eventfilter"
	"knative.dev/eventing/pkg/eventfilter/attributes"
)

// route is a Trigger as its dispatcher applies it.
type route struct {
	name       string
	filter     eventfilter.Filter
	subscriber string
	delivery   delivery
}

// AddTrigger starts dispatching to tr, a Trigger on this Broker (an empty
// spec.broker or namespace means this one), from the events published
// after it is added (a Trigger already known to the stream from an earlier
// run resumes where it stopped). It fails on a Trigger using spec.filters,
// which the local Broker does not support, on a Trigger name already
// dispatched, and when a destination does not resolve or the delivery spec
// does not parse.
func (b *Broker) AddTrigger(ctx context.Context, tr eventingv1.Trigger) error {
	r, err := b.route(tr)
	if err != nil {
		return fmt.Errorf("localbroker: Trigger %s: %w", tr.Name, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("localbroker: Trigger %s: broker closed", tr.Name)
	}
	if b.triggers[tr.Name] {
		return fmt.Errorf("localbroker: Trigger %s: added twice", tr.Name)
	}
	cons, err := b.consumer(ctx, tr.Name)
	if err != nil {
		return err
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.closed {
			abandon(msg)
			return
		}
		b.wg.Add(1)
		go b.dispatch(r, msg)
	})
	if err != nil {
		return fmt.Errorf("localbroker: Trigger %s: consume: %w", tr.Name, err)
	}
	b.triggers[tr.Name] = true
	b.consumers = append(b.consumers, cc)
	return nil
}

// route reads tr as the dispatcher applies it: its filter, its subscriber's
// URL, and its delivery (the Trigger's spec.delivery, else the Broker's;
// the dead-letter sink of either, the Trigger's first, as Knative's
// broker filter picks it).
func (b *Broker) route(tr eventingv1.Trigger) (*route, error) {
	if tr.Spec.Broker != "" && tr.Spec.Broker != b.name {
		return nil, fmt.Errorf("on Broker %q, not %q", tr.Spec.Broker, b.name)
	}
	if ns := namespaceOr(tr.Namespace, b.ns); ns != b.ns {
		return nil, fmt.Errorf("in namespace %q, not the Broker's %q", ns, b.ns)
	}
	if len(tr.Spec.Filters) > 0 {
		return nil, errors.New("spec.filters (CESQL and the new filter dialects) is not supported by the local Broker; use spec.filter.attributes")
	}
	var attrs map[string]string
	if tr.Spec.Filter != nil {
		attrs = tr.Spec.Filter.Attributes
	}
	sub, err := b.resolveDestination(b.ns, tr.Spec.Subscriber)
	if err != nil {
		return nil, fmt.Errorf("subscriber: %w", err)
	}
	spec := tr.Spec.Delivery
	if spec == nil {
		spec = b.obj.Spec.Delivery
	}
	var dls string
	switch {
	case tr.Spec.Delivery != nil && tr.Spec.Delivery.DeadLetterSink != nil:
		dls, err = b.resolveDestination(b.ns, *tr.Spec.Delivery.DeadLetterSink)
	case b.obj.Spec.Delivery != nil && b.obj.Spec.Delivery.DeadLetterSink != nil:
		dls, err = b.resolveDestination(b.ns, *b.obj.Spec.Delivery.DeadLetterSink)
	}
	if err != nil {
		return nil, fmt.Errorf("dead-letter sink: %w", err)
	}
	d, err := deliveryFromSpec(spec, dls)
	if err != nil {
		return nil, err
	}
	return &route{
		name:       tr.Name,
		filter:     attributes.NewAttributesFilter(attrs),
		subscriber: sub,
		delivery:   d,
	}, nil
}

// consumer returns the Trigger's durable consumer on the broker stream,
// creating it to deliver only new events when there is none.
func (b *Broker) consumer(ctx context.Context, trigger string) (jetstream.Consumer, error) {
	name := token(trigger)
	cons, err := b.stream.Consumer(ctx, name)
	if err == nil {
		return cons, nil
	}
	if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("localbroker: Trigger %s: consumer: %w", trigger, err)
	}
	cons, err = b.stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       name,
		Description:   "Trigger " + b.ns + "/" + trigger,
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxDeliver:    -1,
		MaxAckPending: 256,
	})
	if err != nil {
		return nil, fmt.Errorf("localbroker: Trigger %s: create consumer: %w", trigger, err)
	}
	return cons, nil
}
