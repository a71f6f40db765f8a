package localbroker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/nats-io/nats.go/jetstream"
	"knative.dev/eventing/pkg/eventfilter"
)

// maxResponseBody bounds what is read of a subscriber's answer.
const maxResponseBody = 16 << 20

// errInvalidReply is a subscriber's reply that is not a valid CloudEvent.
var errInvalidReply = errors.New("reply is not a valid CloudEvent")

// result is the outcome of one HTTP attempt.
type result struct {
	code   int
	header http.Header
	body   []byte
	err    error
}

// dispatch delivers one event of the stream to r's subscriber, as Knative's
// channel dispatcher does for a Trigger: skipped when the filter fails;
// acked once the subscriber answers 2xx (its reply put back into the
// broker); redelivered after the backoff when the failure is retried and
// retries are left; dead-lettered otherwise. The attempt number is
// JetStream's delivery count.
func (b *Broker) dispatch(r *route, msg jetstream.Msg) {
	defer b.wg.Done()
	ctx := b.base
	meta, err := msg.Metadata()
	if err != nil {
		b.log().Error("localbroker: message without metadata", "trigger", r.name, "error", err)
		_ = msg.Term()
		return
	}
	var ev event.Event
	if err := json.Unmarshal(msg.Data(), &ev); err != nil {
		b.log().Error("localbroker: undecodable message in the broker stream, terminated",
			"trigger", r.name, "sequence", meta.Sequence.Stream, "error", err)
		_ = msg.Term()
		return
	}
	if r.filter.Filter(ctx, ev) == eventfilter.FailFilter {
		_ = msg.Ack()
		return
	}
	stop := keepAlive(msg)
	defer stop()

	key := r.name + "/" + strconv.FormatUint(meta.Sequence.Stream, 10)
	if ext, ok := b.pending.Load(key); ok {
		b.deadLetter(ctx, r, msg, &ev, key, ext.(map[string]any))
		return
	}
	n := int(meta.NumDelivered)
	res := b.send(ctx, r.subscriber, &ev, r.delivery.timeout)
	if ctx.Err() != nil {
		abandon(msg)
		return
	}
	b.opts.observe(Attempt{Trigger: r.name, EventID: ev.ID(), EventType: ev.Type(), N: n, StatusCode: res.code, Err: res.err})
	if isSuccess(res.code) {
		if b.opts.duplicate {
			dup := b.send(ctx, r.subscriber, &ev, r.delivery.timeout)
			if ctx.Err() != nil {
				abandon(msg)
				return
			}
			b.opts.observe(Attempt{Trigger: r.name, EventID: ev.ID(), EventType: ev.Type(), N: n, StatusCode: dup.code, Err: dup.err, Duplicate: true})
			if isSuccess(dup.code) && !b.reply(ctx, r, msg, &ev, key, dup) {
				return // the message is dead-lettered or redelivered already
			}
		}
		if b.reply(ctx, r, msg, &ev, key, res) {
			b.ack(r, msg, &ev)
		}
		return
	}
	if shouldRetry(res.code, res.err) && n <= r.delivery.retries {
		delay := r.delivery.backoff(n - 1)
		b.log().Warn("localbroker: delivery failed, retrying", "trigger", r.name, "id", ev.ID(), "type", ev.Type(),
			"attempt", n, "status", res.code, "error", res.err, "backoff", delay)
		if err := msg.NakWithDelay(delay); err != nil {
			b.log().Error("localbroker: nak", "trigger", r.name, "id", ev.ID(), "error", err)
		}
		return
	}
	b.log().Warn("localbroker: delivery failed, dead-lettering", "trigger", r.name, "id", ev.ID(), "type", ev.Type(),
		"attempt", n, "status", res.code, "error", res.err)
	b.deadLetter(ctx, r, msg, &ev, key, errorExtensions(r.subscriber, res.code, res.body, res.err))
}

// reply puts the event of a 2xx answer, if any, back into the broker and
// says whether the delivery is complete. A reply that is no valid CloudEvent
// dead-letters the original event (400 from the ingress, as Knative's broker
// ingress would answer it); one that cannot be persisted leaves the event to
// be redelivered.
func (b *Broker) reply(ctx context.Context, r *route, msg jetstream.Msg, ev *event.Event, key string, res result) bool {
	m := cehttp.NewMessage(res.header, io.NopCloser(bytes.NewReader(res.body)))
	if m.ReadEncoding() == binding.EncodingUnknown {
		return true // no event in the answer
	}
	rep, err := binding.ToEvent(ctx, m)
	if err == nil {
		err = rep.Validate()
	}
	if err != nil {
		err = fmt.Errorf("%w: %w", errInvalidReply, err)
		b.log().Warn("localbroker: invalid reply, dead-lettering", "trigger", r.name, "id", ev.ID(), "error", err)
		b.deadLetter(ctx, r, msg, ev, key, errorExtensions(b.url, http.StatusBadRequest, []byte(err.Error()), nil))
		return false
	}
	if err := b.publish(ctx, rep); err != nil {
		if ctx.Err() != nil {
			abandon(msg)
			return false
		}
		b.log().Error("localbroker: reply not persisted, redelivering the event", "trigger", r.name, "id", ev.ID(),
			"reply_id", rep.ID(), "error", err)
		_ = msg.NakWithDelay(r.delivery.backoff(0))
		return false
	}
	return true
}

// deadLetter sends ev with the error extensions ext to r's dead-letter sink,
// retried in process with the Trigger's delivery as kncloudevents retries a
// dead letter, and acks the message once the sink took it. Without a sink
// the event is dropped, as Knative drops it, with an error logged. When the
// sink does not take it, the message is left to be redelivered, straight to
// the sink (pending), and an error is logged.
func (b *Broker) deadLetter(ctx context.Context, r *route, msg jetstream.Msg, ev *event.Event, key string, ext map[string]any) {
	d := r.delivery
	if d.deadLetter == "" {
		b.log().Error("localbroker: undeliverable event dropped: the Trigger has no dead-letter sink",
			"trigger", r.name, "id", ev.ID(), "type", ev.Type(), "knativeerrorcode", ext["knativeerrorcode"])
		_ = msg.Term()
		return
	}
	dl := ev.Clone()
	for k, v := range ext {
		dl.SetExtension(k, v)
	}
	var res result
	for i := 0; ; i++ {
		res = b.send(ctx, d.deadLetter, &dl, d.timeout)
		if ctx.Err() != nil {
			abandon(msg)
			return
		}
		b.opts.observe(Attempt{Trigger: r.name, EventID: ev.ID(), EventType: ev.Type(), N: i + 1,
			StatusCode: res.code, Err: res.err, DeadLetter: true})
		if isSuccess(res.code) {
			b.pending.Delete(key)
			b.ack(r, msg, ev)
			return
		}
		if !shouldRetry(res.code, res.err) || i >= d.retries {
			break
		}
		if !sleep(ctx, d.backoff(i)) {
			abandon(msg)
			return
		}
	}
	b.pending.Store(key, ext)
	delay := max(d.backoff(d.retries), time.Second)
	b.log().Error("localbroker: dead-letter sink did not take the event; kept for redelivery to it",
		"trigger", r.name, "id", ev.ID(), "type", ev.Type(), "status", res.code, "error", res.err, "redelivery_in", delay)
	if err := msg.NakWithDelay(delay); err != nil {
		b.log().Error("localbroker: nak", "trigger", r.name, "id", ev.ID(), "error", err)
	}
}

// abandon hands a message whose delivery Close cut short back to JetStream
// at once, for the next Broker on the stream; pending dead letters are not
// carried over, so that one is attempted at the subscriber again.
func abandon(msg jetstream.Msg) { _ = msg.Nak() }

// ack acknowledges a delivered message; a lost ack means one more delivery,
// which the subscriber must take as the duplicate it is.
func (b *Broker) ack(r *route, msg jetstream.Msg, ev *event.Event) {
	if err := msg.Ack(); err != nil {
		b.log().Warn("localbroker: ack", "trigger", r.name, "id", ev.ID(), "error", err)
	}
}

// send posts ev in binary mode with "Prefer: reply" (as Knative's
// dispatcher) to url, within timeout when it is not 0.
func (b *Broker) send(ctx context.Context, url string, ev *event.Event, timeout time.Duration) result {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		return result{err: fmt.Errorf("request to %s: %w", url, err)}
	}
	if err := cehttp.WriteRequest(ctx, binding.ToMessage(ev), req); err != nil {
		return result{err: fmt.Errorf("encode event %s: %w", ev.ID(), err)}
	}
	req.Header.Set("Prefer", "reply")
	resp, err := b.client.Do(req)
	if err != nil {
		return result{err: err}
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		return result{err: fmt.Errorf("read answer from %s: %w", url, err)}
	}
	return result{code: resp.StatusCode, header: resp.Header, body: body}
}

// keepAlive tells JetStream every ackWait/3 that msg is still being worked
// on, until the returned func is called (which waits for it to stop).
func keepAlive(msg jetstream.Msg) func() {
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(ackWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	return func() {
		close(done)
		<-exited
	}
}

// sleep waits d or until ctx ends, and says whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
