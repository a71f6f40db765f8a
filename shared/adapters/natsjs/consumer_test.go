package natsjs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/adapters/natsjs/natstest"
	"council.dev/shared/council"
)

const (
	durable   = "generate"
	replyType = "dev.council.proposal.generated.v1"
)

// fastOptions keep the consumer tests short.
func fastOptions(extra ...natsjs.Option) []natsjs.Option {
	return append([]natsjs.Option{
		natsjs.WithAckWait(2 * time.Second),
		natsjs.WithBackoff(20*time.Millisecond, 100*time.Millisecond),
		natsjs.WithDrainTimeout(5 * time.Second),
	}, extra...)
}

// recorder is a handler that records the events it is given.
type recorder struct {
	mu     sync.Mutex
	events []event.Event
	calls  chan event.Event
	fn     func(ctx context.Context, call int, ev event.Event) (*event.Event, error)
}

func newRecorder(fn func(ctx context.Context, call int, ev event.Event) (*event.Event, error)) *recorder {
	return &recorder{calls: make(chan event.Event, 100), fn: fn}
}

func (r *recorder) handle(ctx context.Context, ev event.Event) (*event.Event, error) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	call := len(r.events)
	r.mu.Unlock()
	r.calls <- ev
	return r.fn(ctx, call, ev)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// drain forgets the calls recorded so far, so that next waits for a new one.
func (r *recorder) drain() {
	for {
		select {
		case <-r.calls:
		default:
			return
		}
	}
}

// next waits for the next handler call.
func (r *recorder) next(t *testing.T) event.Event {
	t.Helper()
	select {
	case ev := <-r.calls:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("handler was not called within 10s")
		return event.Event{}
	}
}

// replyTo answers ev with a reply whose id derives from ev's id.
func replyTo(ev event.Event) *event.Event {
	r := event.New()
	r.SetID("reply-of-" + ev.ID())
	r.SetType(replyType)
	r.SetSource("council.dev/generate")
	r.SetSubject(ev.Subject())
	_ = r.SetData(event.ApplicationJSON, map[string]string{"in_reply_to": ev.ID()})
	return &r
}

// startConsumer runs c until the test ends; the returned stop cancels Run
// and returns its error.
func startConsumer(t *testing.T, js jetstream.JetStream, c *natsjs.Consumer) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	stop = sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-errc:
			return err
		case <-time.After(15 * time.Second):
			return errors.New("Run did not return within 15s of cancel")
		}
	})
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	eventually(t, 10*time.Second, "the durable consumer", func() bool {
		_, err := js.Consumer(t.Context(), "COUNCIL_EVENTS", durable)
		return err == nil
	})
	return stop
}

// terminations subscribes to the server's advisories for terminated
// messages of the test consumer.
type termAdvisory struct {
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
	Reason     string `json:"reason"`
}

func terminations(t *testing.T, nc *nats.Conn) func() termAdvisory {
	t.Helper()
	sub, err := nc.SubscribeSync("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.COUNCIL_EVENTS." + durable)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return func() termAdvisory {
		t.Helper()
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("no termination advisory: %v", err)
		}
		var a termAdvisory
		if err := json.Unmarshal(m.Data, &a); err != nil {
			t.Fatal(err)
		}
		return a
	}
}

// consumerInfo returns the server's view of the test consumer.
func consumerInfo(t *testing.T, js jetstream.JetStream) *jetstream.ConsumerInfo {
	t.Helper()
	c, err := js.Consumer(t.Context(), "COUNCIL_EVENTS", durable)
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	info, err := c.Info(t.Context())
	if err != nil {
		t.Fatalf("consumer info: %v", err)
	}
	return info
}

// waitSettled waits until every message up to stream sequence seq is acked
// or terminated and nothing is pending.
func waitSettled(t *testing.T, js jetstream.JetStream, seq uint64) {
	t.Helper()
	var last *jetstream.ConsumerInfo
	defer func() {
		if t.Failed() && last != nil {
			b, _ := json.Marshal(last)
			t.Logf("consumer info: %s", b)
		}
	}()
	eventually(t, 10*time.Second, fmt.Sprintf("consumer settled through stream seq %d", seq), func() bool {
		info := consumerInfo(t, js)
		last = info
		return info.AckFloor.Stream >= seq && info.NumAckPending == 0 && info.NumPending == 0
	})
}

func emit(t *testing.T, pub *natsjs.Publisher, id string) {
	t.Helper()
	if err := pub.Emit(ctxTimeout(t), testEnvelope(id)); err != nil {
		t.Fatalf("Emit %s: %v", id, err)
	}
}

func newPublisher(t *testing.T, js jetstream.JetStream) *natsjs.Publisher {
	t.Helper()
	pub, err := natsjs.NewPublisher(js)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func newConsumer(t *testing.T, js jetstream.JetStream, r *recorder, opts ...natsjs.Option) *natsjs.Consumer {
	t.Helper()
	c, err := natsjs.NewConsumer(js, durable, []string{testType}, r.handle, fastOptions(opts...)...)
	if err != nil {
		t.Fatalf("NewConsumer: %v", err)
	}
	return c
}

func TestConsumerHandlesEventAndPublishesReply(t *testing.T) {
	e := newEnv(t)
	pub := newPublisher(t, e.js)
	var logs logBuffer
	r := newRecorder(func(_ context.Context, _ int, ev event.Event) (*event.Event, error) { return replyTo(ev), nil })
	startConsumer(t, e.js, newConsumer(t, e.js, r, natsjs.WithLogger(logs.logger())))

	emit(t, pub, "ev-1")
	got := r.next(t)
	want := testEnvelope("ev-1")
	if got.ID() != want.ID || got.Type() != want.Type || got.Source() != want.Source ||
		got.Subject() != want.Subject || !got.Time().Equal(want.Time) {
		t.Errorf("handler got %s", got)
	}
	if diff := cmp.Diff(string(want.Data), string(got.Data())); diff != "" {
		t.Errorf("handler data (-want +got):\n%s", diff)
	}

	waitSettled(t, e.js, 1)
	eventually(t, 5*time.Second, "the log line", func() bool { return len(logs.records(t, "jetstream message")) > 0 })
	m := lastMsg(t, e.js, "COUNCIL_EVENTS", "council.events."+replyType)
	if id := m.Header.Get("Nats-Msg-Id"); id != "reply-of-ev-1" {
		t.Errorf("reply Nats-Msg-Id = %q, want reply-of-ev-1", id)
	}
	if m.Sequence != 2 {
		t.Errorf("reply at stream seq %d, want 2 (published before the ack)", m.Sequence)
	}

	recs := logs.records(t, "jetstream message")
	if len(recs) != 1 {
		t.Fatalf("got %d log lines for one message, want 1: %v", len(recs), recs)
	}
	for _, key := range []string{"event_id", "type", "subject", "outcome", "duration"} {
		if _, ok := recs[0][key]; !ok {
			t.Errorf("log line lacks %q: %v", key, recs[0])
		}
	}
	if recs[0]["outcome"] != "acked" || recs[0]["event_id"] != "ev-1" {
		t.Errorf("log line = %v, want outcome acked for ev-1", recs[0])
	}
}

func TestConsumerTerminatesBadMessagesWithoutBlocking(t *testing.T) {
	e := newEnv(t)
	pub := newPublisher(t, e.js)
	nextTerm := terminations(t, e.nc)
	var logs logBuffer
	r := newRecorder(func(context.Context, int, event.Event) (*event.Event, error) { return nil, nil })
	// One message at a time: a bad message that blocked would stall the good one.
	startConsumer(t, e.js, newConsumer(t, e.js, r, natsjs.WithConcurrency(1), natsjs.WithLogger(logs.logger())))

	ctx := ctxTimeout(t)
	subject := "council.events." + testType
	if _, err := e.js.Publish(ctx, subject, []byte("this is not JSON")); err != nil {
		t.Fatal(err)
	}
	missing := `{"specversion":"1.0","type":"` + testType + `","datacontenttype":"application/json","data":{}}`
	if _, err := e.js.Publish(ctx, subject, []byte(missing)); err != nil {
		t.Fatal(err)
	}
	emit(t, pub, "ev-good")

	if got := r.next(t); got.ID() != "ev-good" {
		t.Errorf("handler got %q, want ev-good", got.ID())
	}
	for _, seq := range []uint64{1, 2} {
		a := nextTerm()
		if a.StreamSeq != seq || a.Deliveries != 1 {
			t.Errorf("termination advisory %+v, want stream seq %d on its first delivery", a, seq)
		}
	}
	waitSettled(t, e.js, 3)
	if n := r.count(); n != 1 {
		t.Errorf("handler called %d times, want 1", n)
	}
	// The log line follows the ack.
	eventually(t, 5*time.Second, "3 log lines", func() bool { return len(logs.records(t, "jetstream message")) == 3 })
	var outcomes []string
	for _, rec := range logs.records(t, "jetstream message") {
		outcomes = append(outcomes, fmt.Sprint(rec["outcome"]))
	}
	if diff := cmp.Diff([]string{"rejected", "rejected", "acked"}, outcomes); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
}

func TestConsumerRedeliversTransientError(t *testing.T) {
	e := newEnv(t)
	pub := newPublisher(t, e.js)
	r := newRecorder(func(_ context.Context, call int, ev event.Event) (*event.Event, error) {
		if call == 1 {
			return nil, council.Unavailablef("llm busy")
		}
		return replyTo(ev), nil
	})
	startConsumer(t, e.js, newConsumer(t, e.js, r))

	emit(t, pub, "ev-1")
	r.next(t)
	if got := r.next(t); got.ID() != "ev-1" {
		t.Errorf("redelivered %q, want ev-1", got.ID())
	}
	waitSettled(t, e.js, 1)
	if n := r.count(); n != 2 {
		t.Errorf("handler called %d times, want 2", n)
	}
	lastMsg(t, e.js, "COUNCIL_EVENTS", "council.events."+replyType) // the reply exists
}

func TestConsumerTerminatesPermanentErrorAndPanic(t *testing.T) {
	for name, tc := range map[string]struct {
		fn     func() (*event.Event, error)
		reason string
	}{
		"permanent error": {
			fn:     func() (*event.Event, error) { return nil, fmt.Errorf("decode task: %w", council.ErrInvalid) },
			reason: "decode task: invalid",
		},
		"panic": {
			fn:     func() (*event.Event, error) { panic("boom") },
			reason: "handler panic: boom",
		},
		"invalid reply": {
			fn:     func() (*event.Event, error) { r := event.New(); r.SetID("x"); return &r, nil },
			reason: "reply x: ",
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			pub := newPublisher(t, e.js)
			nextTerm := terminations(t, e.nc)
			r := newRecorder(func(_ context.Context, _ int, ev event.Event) (*event.Event, error) {
				if ev.ID() == "ev-bad" {
					return tc.fn()
				}
				return nil, nil
			})
			startConsumer(t, e.js, newConsumer(t, e.js, r, natsjs.WithConcurrency(1)))

			emit(t, pub, "ev-bad")
			emit(t, pub, "ev-next")
			a := nextTerm()
			if a.StreamSeq != 1 || !strings.HasPrefix(a.Reason, tc.reason) {
				t.Errorf("termination advisory %+v, want seq 1 with reason starting %q", a, tc.reason)
			}
			waitSettled(t, e.js, 2)
			info := consumerInfo(t, e.js)
			if info.NumRedelivered != 0 {
				t.Errorf("%d messages redelivered, want 0", info.NumRedelivered)
			}
			if n := r.count(); n != 2 {
				t.Errorf("handler called %d times, want 2 (bad once, next once)", n)
			}
		})
	}
}

func TestConsumerTerminatesAfterMaxDeliver(t *testing.T) {
	e := newEnv(t)
	pub := newPublisher(t, e.js)
	nextTerm := terminations(t, e.nc)
	r := newRecorder(func(context.Context, int, event.Event) (*event.Event, error) {
		return nil, council.Unavailablef("still down")
	})
	startConsumer(t, e.js, newConsumer(t, e.js, r, natsjs.WithMaxDeliver(3)))

	emit(t, pub, "ev-1")
	a := nextTerm()
	if a.Deliveries != 3 || !strings.Contains(a.Reason, "after 3 deliveries") {
		t.Errorf("termination advisory %+v, want after 3 deliveries", a)
	}
	waitSettled(t, e.js, 1)
	if n := r.count(); n != 3 {
		t.Errorf("handler called %d times, want 3", n)
	}
}

func TestConsumerKeepsLongHandlerInProgress(t *testing.T) {
	e := newEnv(t)
	pub := newPublisher(t, e.js)
	r := newRecorder(func(context.Context, int, event.Event) (*event.Event, error) {
		time.Sleep(2500 * time.Millisecond) // well past AckWait
		return nil, nil
	})
	startConsumer(t, e.js, newConsumer(t, e.js, r, natsjs.WithAckWait(time.Second)))

	emit(t, pub, "ev-slow")
	r.next(t)
	waitSettled(t, e.js, 1)
	if n := r.count(); n != 1 {
		t.Errorf("handler called %d times, want 1: the message was redelivered while in progress", n)
	}
}

func TestConsumerBoundsConcurrency(t *testing.T) {
	e := newEnv(t)
	pub := newPublisher(t, e.js)
	var running, peak atomic.Int32
	r := newRecorder(func(context.Context, int, event.Event) (*event.Event, error) {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
		running.Add(-1)
		return nil, nil
	})
	for i := range 9 {
		emit(t, pub, fmt.Sprintf("ev-%d", i))
	}
	startConsumer(t, e.js, newConsumer(t, e.js, r, natsjs.WithConcurrency(3)))
	waitSettled(t, e.js, 9)
	if p := peak.Load(); p != 3 {
		t.Errorf("peak concurrency %d, want 3", p)
	}
	if n := r.count(); n != 9 {
		t.Errorf("handler called %d times, want 9", n)
	}
}

func TestConsumerShutdownWaitsForInFlight(t *testing.T) {
	e := newEnv(t)
	pub := newPublisher(t, e.js)
	release := make(chan struct{})
	handlerCtxErr := make(chan error, 1)
	r := newRecorder(func(ctx context.Context, _ int, ev event.Event) (*event.Event, error) {
		<-release
		handlerCtxErr <- ctx.Err()
		return replyTo(ev), nil
	})
	stop := startConsumer(t, e.js, newConsumer(t, e.js, r))

	emit(t, pub, "ev-1")
	r.next(t)
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	select {
	case err := <-stopped:
		t.Fatalf("Run returned (%v) while a handler was in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Errorf("Run = %v, want nil after cancel", err)
	}
	if err := <-handlerCtxErr; err != nil {
		t.Errorf("in-flight handler context was cancelled (%v) before the drain timeout", err)
	}
	waitSettled(t, e.js, 1)
	lastMsg(t, e.js, "COUNCIL_EVENTS", "council.events."+replyType)
}

func TestConsumerDrainTimeoutCancelsHandlers(t *testing.T) {
	e := newEnv(t)
	pub := newPublisher(t, e.js)
	r := newRecorder(func(ctx context.Context, _ int, _ event.Event) (*event.Event, error) {
		<-ctx.Done()
		return nil, fmt.Errorf("generate: %w: %w", council.ErrUnavailable, ctx.Err())
	})
	stop := startConsumer(t, e.js, newConsumer(t, e.js, r, natsjs.WithDrainTimeout(300*time.Millisecond)))

	emit(t, pub, "ev-1")
	r.next(t)
	start := time.Now()
	if err := stop(); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 5*time.Second {
		t.Errorf("Run returned %s after cancel, want about the 300ms drain timeout", d)
	}
	// The cancelled handler's message was nak'ed for redelivery, not acked.
	eventually(t, 5*time.Second, "message back to pending", func() bool {
		info := consumerInfo(t, e.js)
		return info.AckFloor.Stream == 0 && info.NumAckPending+int(info.NumPending) >= 1
	})
}

func TestConsumerDuplicateDelivery(t *testing.T) {
	e := newEnv(t)
	pub := newPublisher(t, e.js)
	r := newRecorder(func(_ context.Context, _ int, ev event.Event) (*event.Event, error) { return replyTo(ev), nil })
	startConsumer(t, e.js, newConsumer(t, e.js, r, natsjs.WithDuplicateDelivery()))

	emit(t, pub, "ev-1")
	first, second := r.next(t), r.next(t)
	if first.ID() != "ev-1" || second.ID() != "ev-1" {
		t.Errorf("handler got %q and %q, want ev-1 twice", first.ID(), second.ID())
	}
	waitSettled(t, e.js, 1)
	// Both replies were published with the same id: the broker kept one.
	if n := streamMsgs(t, e.js, "COUNCIL_EVENTS"); n != 2 {
		t.Errorf("COUNCIL_EVENTS holds %d messages, want 2 (request + one reply)", n)
	}
}

func TestConsumerBackoff(t *testing.T) {
	e := newEnv(t)
	c, err := natsjs.NewConsumer(e.js, durable, []string{testType},
		func(context.Context, event.Event) (*event.Event, error) { return nil, nil })
	if err != nil {
		t.Fatal(err)
	}
	for delivered, want := range map[uint64]time.Duration{
		1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 6: 32 * time.Second,
		7: time.Minute, 10: time.Minute, 1000: time.Minute,
	} {
		if got := c.Backoff(delivered); got != want {
			t.Errorf("Backoff(%d) = %s, want %s", delivered, got, want)
		}
	}
}

func TestNewConsumerValidates(t *testing.T) {
	e := newEnv(t)
	ok := func(context.Context, event.Event) (*event.Event, error) { return nil, nil }
	for name, tc := range map[string]struct {
		durable string
		types   []string
		handler natsjs.Handler
		opts    []natsjs.Option
	}{
		"dotted durable": {durable: "a.b", types: []string{testType}, handler: ok},
		"no types":       {durable: durable, handler: ok},
		"wildcard type":  {durable: durable, types: []string{"dev.>"}, handler: ok},
		"empty type":     {durable: durable, types: []string{""}, handler: ok},
		"nil handler":    {durable: durable, types: []string{testType}},
		"zero max":       {durable: durable, types: []string{testType}, handler: ok, opts: []natsjs.Option{natsjs.WithMaxDeliver(0)}},
		"zero conc":      {durable: durable, types: []string{testType}, handler: ok, opts: []natsjs.Option{natsjs.WithConcurrency(0)}},
		"tiny ack wait":  {durable: durable, types: []string{testType}, handler: ok, opts: []natsjs.Option{natsjs.WithAckWait(time.Millisecond)}},
		"bad backoff":    {durable: durable, types: []string{testType}, handler: ok, opts: []natsjs.Option{natsjs.WithBackoff(time.Minute, time.Second)}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := natsjs.NewConsumer(e.js, tc.durable, tc.types, tc.handler, tc.opts...); err == nil {
				t.Error("NewConsumer succeeded, want an error")
			}
		})
	}
}

func TestConsumerRunWithoutStream(t *testing.T) {
	_, _, js := natstest.Start(t) // no Setup
	c, err := natsjs.NewConsumer(js, durable, []string{testType},
		func(context.Context, event.Event) (*event.Event, error) { return nil, nil })
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Run(ctxTimeout(t)); !errors.Is(err, council.ErrInvalid) {
		t.Errorf("Run without the broker stream = %v, want ErrInvalid", err)
	}
}
