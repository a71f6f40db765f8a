package natsjs_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/events"
	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/council"
)

// TestTimerFiresOnceAtItsTime: Publisher.At has the server publish the
// event on its type's subject at the time set (rounded up to the second),
// once; a newer timer of the same subject replaces the older one, and a
// timer without a subject is refused.
func TestTimerFiresOnceAtItsTime(t *testing.T) {
	e := newEnv(t)
	ctx := ctxTimeout(t)
	p, err := natsjs.NewPublisher(e.js)
	if err != nil {
		t.Fatal(err)
	}
	topo := natsjs.DefaultTopology()
	// The server stores the fired event in the stream (as a publish would
	// after its acknowledgement): consumers see it, core subscribers don't.
	cons, err := e.js.OrderedConsumer(ctx, topo.EventsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{topo.EventSubject(events.TypeSweepTick)},
	})
	if err != nil {
		t.Fatal(err)
	}
	fired := make(chan jetstream.Msg, 8)
	cc, err := cons.Consume(func(m jetstream.Msg) { fired <- m })
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Stop()

	tick := func(id string) council.Envelope {
		env := events.NewTick("council.dev/execute", id, time.Now())
		env.Subject = "dlb-timer"
		return env
	}
	start := time.Now()
	// Set at 1 s, then moved to 2 s: only the second fires.
	if err := p.At(ctx, start.Add(time.Second), tick("dlb-timer.deadline.1")); err != nil {
		t.Fatalf("At: %v", err)
	}
	if err := p.At(ctx, start.Add(2*time.Second), tick("dlb-timer.deadline.2")); err != nil {
		t.Fatalf("At: %v", err)
	}
	select {
	case m := <-fired:
		took := time.Since(start)
		ev, err := events.DecodeStructured(m.Data())
		if err != nil {
			t.Fatalf("fired message: %v", err)
		}
		if ev.ID() != "dlb-timer.deadline.2" || ev.Subject() != "dlb-timer" {
			t.Errorf("fired %s (subject %s), want the newer timer dlb-timer.deadline.2", ev.ID(), ev.Subject())
		}
		if took < 2*time.Second || took > 5*time.Second {
			t.Errorf("fired after %s, want between 2 s and 5 s", took)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the timer did not fire within 10 s")
	}
	// Nothing is left to fire: the newer timer replaced the older one on
	// the schedule subject, and the server removes a timer once it fired.
	// (The fired tick is one message on the tick subject.)
	stream, err := e.js.Stream(ctx, topo.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(topo.EventsSubjectPrefix+".>"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{topo.EventSubject(events.TypeSweepTick): 1}
	if diff := cmp.Diff(want, info.State.Subjects); diff != "" {
		t.Errorf("messages by subject after the timer fired (-want +got):\n%s", diff)
	}

	bad := tick("no-subject")
	bad.Subject = ""
	if err := p.At(ctx, time.Now(), bad); err == nil {
		t.Error("a timer without a subject was accepted")
	}
}

// TestLargeEventGoesByReference: an event larger than the broker's
// max_payload is published without its data, with a dataref to the data in
// the bodies object store (the claim check); Resolve gives the whole event
// back, and a reference whose object is gone is a permanent error.
func TestLargeEventGoesByReference(t *testing.T) {
	e := newEnv(t)
	ctx := ctxTimeout(t)
	p, err := natsjs.NewPublisher(e.js)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte(`{"pad":"` + strings.Repeat("x", int(e.nc.MaxPayload())) + `"}`)
	big := council.Envelope{ID: "big-1", Type: events.TypeSweepTick, Source: "council.dev/test", Time: time.Now(), Data: data}
	if err := p.Emit(ctx, big); err != nil {
		t.Fatalf("Emit of %d bytes: %v", len(data), err)
	}
	topo := natsjs.DefaultTopology()
	stream, err := e.js.Stream(ctx, topo.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetLastMsgForSubject(ctx, topo.EventSubject(events.TypeSweepTick))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Data) > 4096 {
		t.Errorf("the broker holds %d bytes, want the event without its data", len(m.Data))
	}
	sent, err := events.DecodeStructured(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	ref, ok := events.OffloadedRef(sent)
	if !ok {
		t.Fatalf("no dataref on the event the broker holds: %v", sent.Extensions())
	}
	whole, err := natsjs.Resolve(ctx, e.js, sent)
	if err != nil {
		t.Fatalf("Resolve %s: %v", ref, err)
	}
	if string(whole.Data()) != string(data) {
		t.Errorf("resolved %d bytes, want the %d sent", len(whole.Data()), len(data))
	}

	obs, err := e.js.ObjectStore(ctx, topo.BodiesBucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := obs.Delete(ctx, "big-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := natsjs.Resolve(ctx, e.js, sent); !errors.Is(err, council.ErrInvalid) || council.Retryable(err) {
		t.Errorf("Resolve of a deleted object: %v, want a permanent error", err)
	}
}
