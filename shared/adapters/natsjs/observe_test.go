package natsjs_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"council.dev/events"
	"council.dev/shared/adapters/natsjs"
)

type observed struct {
	mu         sync.Mutex
	pending    []uint64
	duplicates []string
}

func (o *observed) Pending(_ context.Context, _ string, n uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pending = append(o.pending, n)
}

func (o *observed) Duplicate(_ context.Context, typ string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.duplicates = append(o.duplicates, typ)
}

// TestTraceContextAndObserver: an event's trace context (the CloudEvents
// distributed-tracing extension) is also set as NATS headers; one sent
// with the headers only reaches the handler with the extension; the
// observer hears the queue behind each message and the duplicates the
// broker drops.
func TestTraceContextAndObserver(t *testing.T) {
	e := newEnv(t)
	var obs observed
	pub, err := natsjs.NewPublisher(e.js, natsjs.WithObserver(&obs))
	if err != nil {
		t.Fatal(err)
	}
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	env := testEnvelope("ev-1")
	env.TraceParent, env.TraceState = tp, "k=v"
	for range 2 {
		if err := pub.Emit(ctxTimeout(t), env); err != nil {
			t.Fatal(err)
		}
	}
	m := lastMsg(t, e.js, "COUNCIL_EVENTS", "council.events."+testType)
	if m.Header.Get("traceparent") != tp || m.Header.Get("tracestate") != "k=v" {
		t.Errorf("NATS headers %v: want traceparent %s, tracestate k=v", m.Header, tp)
	}
	// Headers only: a producer that knows no CloudEvents extension.
	ev, err := events.CheckedEvent(testEnvelope("ev-2"))
	if err != nil {
		t.Fatal(err)
	}
	body, err := events.EncodeStructured(ev)
	if err != nil {
		t.Fatal(err)
	}
	msg := &nats.Msg{Subject: "council.events." + testType, Data: body, Header: nats.Header{"traceparent": {tp}}}
	if _, err := e.js.PublishMsg(ctxTimeout(t), msg); err != nil {
		t.Fatal(err)
	}

	r := newRecorder(func(context.Context, int, event.Event) (*event.Event, error) { return nil, nil })
	startConsumer(t, e.js, newConsumer(t, e.js, r, natsjs.WithObserver(&obs)))
	seen := map[string]bool{}
	for range 2 {
		got := r.next(t)
		seen[got.ID()] = true
		if got.Extensions()[events.ExtTraceParent] != tp {
			t.Errorf("handler got %s with extensions %v, want traceparent %s", got.ID(), got.Extensions(), tp)
		}
	}
	if !seen["ev-1"] || !seen["ev-2"] {
		t.Errorf("handled %v, want ev-1 and ev-2", seen)
	}
	waitSettled(t, e.js, 2)
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.duplicates) != 1 || obs.duplicates[0] != testType {
		t.Errorf("duplicates %v, want one of %s", obs.duplicates, testType)
	}
	slices.Sort(obs.pending)
	if !slices.Equal(obs.pending, []uint64{0, 1}) {
		t.Errorf("pending %v, want 1 behind the first message and 0 behind the second", obs.pending)
	}
}
