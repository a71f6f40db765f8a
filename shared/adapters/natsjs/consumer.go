package natsjs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/events"
	"council.dev/shared/council"
)

// Handler handles one event. It returns a reply event to publish, or nil for
// none. An error is classified with council.Retryable: a permanent error
// terminates the message, a transient one has it redelivered later.
type Handler func(ctx context.Context, ev event.Event) (*event.Event, error)

// Message outcomes, as logged in the "outcome" attribute.
const (
	outcomeAcked      = "acked"
	outcomeRejected   = "rejected"   // not a valid CloudEvent: terminated
	outcomeTerminated = "terminated" // permanent handler error
	outcomePanic      = "panic"      // handler panicked: terminated
	outcomeRetry      = "retry"      // transient error: nak with delay
	outcomeExhausted  = "exhausted"  // transient error on the last delivery: terminated
	outcomeAckFailed  = "ack_failed" // handled, but the ack was not confirmed
	// outcomeDeadLetterFailed: to be terminated, but the dead-letter stream
	// did not take it: nak with delay, dead-lettered on a later delivery.
	outcomeDeadLetterFailed = "dead_letter_failed"
)

// ackTimeout bounds the confirmation of an ack, which may run after Run's
// context is cancelled.
const ackTimeout = 5 * time.Second

// nextPoll is how long one wait for the next message lasts before Run asks
// again.
const nextPoll = time.Second

// maxReason bounds the reason sent with a Term.
const maxReason = 256

// Consumer is the JetStream transport of a function: a durable pull consumer
// on the broker stream, filtered on the event types the function handles,
// that hands each event to a Handler and publishes the handler's reply.
//
// Delivery is at least once: a handler must be idempotent. A message that is
// not a valid CloudEvent, or whose handler fails permanently or panics, is
// terminated and never blocks the messages behind it; a transient failure is
// redelivered with exponential backoff until MaxDeliver, then terminated.
// Every terminated message is first copied, with its reason, to the
// dead-letter stream (Topology.DLQStream, DeadLetter), where `council dlq`
// lists, shows and replays it.
type Consumer struct {
	js      jetstream.JetStream
	pub     *Publisher
	handler Handler
	cfg     jetstream.ConsumerConfig
	o       options
}

// NewConsumer returns a Consumer named durable for events of the given types
// (each type T is read from <EventsSubjectPrefix>.T), handled by handler.
// Options: WithTopology, WithLogger, WithClock, WithAckWait, WithMaxDeliver,
// WithConcurrency, WithBackoff, WithDrainTimeout, WithDuplicateDelivery,
// WithObserver (queue lag, duplicates dropped).
// Nothing is created on the server until Run.
func NewConsumer(js jetstream.JetStream, durable string, types []string, handler Handler, opts ...Option) (*Consumer, error) {
	if js == nil {
		return nil, errors.New("natsjs: new consumer: nil JetStream")
	}
	if handler == nil {
		return nil, errors.New("natsjs: new consumer: nil handler")
	}
	if !validID(durable) {
		return nil, fmt.Errorf("natsjs: new consumer: durable name %q: want letters, digits, '-' and '_'", durable)
	}
	if len(types) == 0 {
		return nil, fmt.Errorf("natsjs: new consumer %s: no event types", durable)
	}
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	pub, err := NewPublisher(js, opts...)
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(types))
	filters := make([]string, 0, len(types))
	for _, t := range types {
		subject := o.topology.EventSubject(t)
		if t == "" || !validSubject(subject) {
			return nil, fmt.Errorf("natsjs: new consumer %s: event type %q is not a subject-safe name", durable, t)
		}
		if !seen[subject] {
			seen[subject] = true
			filters = append(filters, subject)
		}
	}
	cfg := jetstream.ConsumerConfig{
		Durable:        durable,
		Description:    "council function " + durable,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        o.ackWait,
		MaxDeliver:     o.maxDeliver,
		MaxAckPending:  o.concurrency,
		FilterSubjects: filters,
	}
	return &Consumer{js: js, pub: pub, handler: handler, cfg: cfg, o: o}, nil
}

// Run creates or updates the durable consumer and handles its messages, up
// to the configured concurrency at once, until ctx is cancelled. It then
// stops fetching, naks the messages fetched but not started, waits for the
// handlers in flight (cancelling their contexts after the drain timeout) and
// returns nil.
//
// It returns an error wrapping council.ErrInvalid when the server rejects the
// consumer (no broker stream: run Setup first) and one wrapping
// council.ErrUnavailable when NATS cannot be reached or the subscription
// ends on its own (connection closed, consumer deleted).
func (c *Consumer) Run(ctx context.Context) error {
	stream := c.o.topology.EventsStream
	cons, err := c.js.CreateOrUpdateConsumer(ctx, stream, c.cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("natsjs: consumer %s on %s: %w", c.cfg.Durable, stream, classify(err))
	}
	msgs, err := cons.Messages(jetstream.PullMaxMessages(c.o.concurrency))
	if err != nil {
		return fmt.Errorf("natsjs: consumer %s: messages: %w", c.cfg.Durable, classify(err))
	}
	// Handlers run on a context that survives ctx, so that a cancelled Run
	// lets them finish; it is cancelled after the drain timeout.
	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()

	sem := make(chan struct{}, c.o.concurrency)
	var wg sync.WaitGroup
	var runErr error
	for {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		// Wait for a message in short rounds: each call to Next rechecks
		// whether a pull request is due, which recovers from a request the
		// client skipped while its previous one was still being sent.
		nctx, ncancel := context.WithTimeout(ctx, nextPoll)
		msg, err := msgs.Next(jetstream.NextContext(nctx))
		ncancel()
		if err != nil {
			<-sem
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, context.DeadlineExceeded) {
				continue
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || errors.Is(err, jetstream.ErrConsumerDeleted) || isConnErr(err) {
				runErr = fmt.Errorf("natsjs: consumer %s: %w: %w", c.cfg.Durable, council.ErrUnavailable, err)
				break
			}
			c.o.logger.WarnContext(ctx, "jetstream consumer: next message", "consumer", c.cfg.Durable, "error", err)
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c.handle(base, msg)
		}()
	}
	c.releaseFetched(msgs)
	c.drain(&wg, cancelBase)
	return runErr
}

// releaseFetched stops the subscription and naks the messages it had
// fetched but not handed out, so that they are redelivered now rather than
// after AckWait.
func (c *Consumer) releaseFetched(msgs jetstream.MessagesContext) {
	msgs.Drain()
	for {
		msg, err := msgs.Next(jetstream.NextMaxWait(time.Second))
		if err != nil {
			msgs.Stop()
			return
		}
		_ = msg.Nak()
	}
}

// drain waits for the handlers in flight, cancelling their contexts once the
// drain timeout has passed.
func (c *Consumer) drain(wg *sync.WaitGroup, cancel context.CancelFunc) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	timer := time.NewTimer(c.o.drainTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		c.o.logger.Warn("jetstream consumer: drain timeout; cancelling handlers",
			"consumer", c.cfg.Durable, "drain_timeout", c.o.drainTimeout)
		cancel()
		<-done
	}
}

// result is what became of one message.
type result struct {
	outcome string
	err     error
	stack   []byte
	replies int
}

// handle processes one message end to end and logs one line about it.
func (c *Consumer) handle(base context.Context, msg jetstream.Msg) {
	start := c.o.now()
	var delivered, streamSeq uint64 = 1, 0
	if md, err := msg.Metadata(); err == nil {
		delivered, streamSeq = md.NumDelivered, md.Sequence.Stream
		if c.o.observer != nil {
			c.o.observer.Pending(base, c.cfg.Durable, md.NumPending)
		}
	}
	attrs := []any{
		"consumer", c.cfg.Durable,
		"nats_subject", msg.Subject(),
		"stream_seq", streamSeq,
		"delivered", delivered,
	}

	var res result
	if ev, err := events.DecodeStructured(msg.Data()); err != nil {
		res = c.reject(msg, err)
	} else {
		// The trace context travels in the event (the distributed-tracing
		// extension); a producer that set only the NATS headers is heard too.
		traceFromHeaders(msg.Headers(), &ev)
		attrs = append(attrs, "event_id", ev.ID(), "type", ev.Type(), "subject", ev.Subject())
		res = c.process(base, msg, ev, delivered)
	}

	attrs = append(attrs, "outcome", res.outcome, "duration", c.o.now().Sub(start))
	if res.replies > 0 {
		attrs = append(attrs, "replies", res.replies)
	}
	level := slog.LevelInfo
	if res.err != nil {
		attrs = append(attrs, "error", res.err.Error())
		level = slog.LevelWarn
	}
	if res.stack != nil {
		attrs = append(attrs, "stack", string(res.stack))
	}
	switch res.outcome {
	case outcomePanic, outcomeExhausted, outcomeAckFailed, outcomeDeadLetterFailed:
		level = slog.LevelError
	}
	c.o.logger.Log(base, level, "jetstream message", attrs...)
}

// reject terminates a message that is not a valid CloudEvent.
func (c *Consumer) reject(msg jetstream.Msg, err error) result {
	return c.terminate(msg, outcomeRejected, err, nil)
}

// process runs the handler on a valid event, publishes its replies and acks,
// naks or terminates the message.
func (c *Consumer) process(base context.Context, msg jetstream.Msg, ev event.Event, delivered uint64) result {
	calls := 1
	if c.o.duplicate {
		calls = 2
	}
	var replies []event.Event
	var herr error
	func() {
		hctx, cancel := context.WithCancel(base)
		defer cancel()
		stop := c.keepAlive(hctx, msg)
		defer stop()
		for range calls {
			reply, err := c.call(hctx, ev)
			if err != nil {
				herr = err
				return
			}
			if reply != nil {
				replies = append(replies, *reply)
			}
		}
	}()

	var perr *panicError
	switch {
	case errors.As(herr, &perr):
		return c.terminate(msg, outcomePanic, herr, perr.stack)
	case herr != nil && !council.Retryable(herr):
		return c.terminate(msg, outcomeTerminated, herr, nil)
	case herr != nil:
		return c.retry(msg, herr, delivered)
	}

	for _, reply := range replies {
		if err := c.pub.PublishEvent(base, reply); err != nil {
			err = fmt.Errorf("reply %s: %w", reply.ID(), err)
			if !council.Retryable(err) {
				return c.terminate(msg, outcomeTerminated, err, nil)
			}
			return c.retry(msg, err, delivered)
		}
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(base), ackTimeout)
	defer cancel()
	if err := msg.DoubleAck(actx); err != nil {
		return result{outcome: outcomeAckFailed, err: fmt.Errorf("ack: %w", err), replies: len(replies)}
	}
	return result{outcome: outcomeAcked, replies: len(replies)}
}

// panicError is a recovered handler panic.
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("handler panic: %v", e.value) }

// call runs the handler, turning a panic into a *panicError.
func (c *Consumer) call(ctx context.Context, ev event.Event) (reply *event.Event, err error) {
	defer func() {
		if r := recover(); r != nil {
			reply, err = nil, &panicError{value: r, stack: debug.Stack()}
		}
	}()
	// Data sent by reference (the claim check) is fetched first: the
	// handler sees the whole event. A fetch that fails is the handler's
	// failure, classified the same way (gone: permanent; else: retried).
	ev, err = Resolve(ctx, c.js, ev)
	if err != nil {
		return nil, err
	}
	return c.handler(ctx, ev.Clone())
}

// keepAlive tells the server every third of AckWait that msg is still being
// worked on, until the returned stop is called.
func (c *Consumer) keepAlive(ctx context.Context, msg jetstream.Msg) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(c.o.ackWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if err := msg.InProgress(); err != nil {
					c.o.logger.DebugContext(ctx, "jetstream consumer: in progress", "consumer", c.cfg.Durable, "error", err)
				}
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// terminate copies msg with its reason to the dead-letter stream, then
// terminates it. When the dead letter cannot be written, the message is
// not terminated but delivered again later (and dead-lettered then), unless
// this was its last delivery: then it is terminated anyway, and the error
// says its dead letter is missing.
func (c *Consumer) terminate(msg jetstream.Msg, outcome string, err error, stack []byte) result {
	dl := deadLetter{outcome: outcome, reason: err.Error(), delivered: 1}
	if md, mdErr := msg.Metadata(); mdErr == nil {
		dl.delivered, dl.seq = md.NumDelivered, md.Sequence.Stream
	}
	if ev, decErr := events.DecodeStructured(msg.Data()); decErr == nil {
		dl.eventID, dl.eventType = ev.ID(), ev.Type()
	}
	if dlqErr := c.publishDeadLetter(context.Background(), msg, dl); dlqErr != nil {
		if dl.delivered < uint64(c.o.maxDeliver) {
			if nakErr := msg.NakWithDelay(c.backoff(dl.delivered)); nakErr != nil {
				dlqErr = errors.Join(dlqErr, fmt.Errorf("nak: %w", nakErr))
			}
			return result{outcome: outcomeDeadLetterFailed, err: errors.Join(err, dlqErr), stack: stack}
		}
		err = errors.Join(err, fmt.Errorf("terminated without a dead letter: %w", dlqErr))
	}
	if termErr := msg.TermWithReason(reason(err)); termErr != nil {
		err = errors.Join(err, fmt.Errorf("term: %w", termErr))
	}
	return result{outcome: outcome, err: err, stack: stack}
}

// retry naks msg with a delay growing with its deliveries, or terminates it
// on its last delivery.
func (c *Consumer) retry(msg jetstream.Msg, err error, delivered uint64) result {
	if delivered >= uint64(c.o.maxDeliver) {
		return c.terminate(msg, outcomeExhausted, fmt.Errorf("after %d deliveries: %w", delivered, err), nil)
	}
	if nakErr := msg.NakWithDelay(c.backoff(delivered)); nakErr != nil {
		err = errors.Join(err, fmt.Errorf("nak: %w", nakErr))
	}
	return result{outcome: outcomeRetry, err: err}
}

// backoff returns the redelivery delay after the given delivery: the base
// delay doubled for each earlier delivery, capped at the maximum.
func (c *Consumer) backoff(delivered uint64) time.Duration {
	d := c.o.backoffBase
	for i := uint64(1); i < delivered && d < c.o.backoffMax; i++ {
		d *= 2
	}
	return min(d, c.o.backoffMax)
}

// reason shortens err to a Term reason.
func reason(err error) string {
	s := err.Error()
	if len(s) > maxReason {
		s = strings.ToValidUTF8(s[:maxReason], "")
	}
	return s
}
