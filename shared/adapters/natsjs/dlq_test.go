package natsjs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/council"
)

// deadLetters waits until the dead-letter stream holds n dead letters and
// returns them.
func deadLetters(t *testing.T, js jetstream.JetStream, n int) []natsjs.DeadLetter {
	t.Helper()
	var got []natsjs.DeadLetter
	eventually(t, 15*time.Second, fmt.Sprintf("%d dead letters", n), func() bool {
		var err error
		got, err = natsjs.ListDeadLetters(t.Context(), js, natsjs.Topology{}, "", 0, 100)
		if err != nil {
			t.Fatalf("ListDeadLetters: %v", err)
		}
		return len(got) >= n
	})
	if len(got) != n {
		t.Fatalf("%d dead letters, want %d", len(got), n)
	}
	return got
}

// TestTerminatedEventsGoToTheDeadLetterStream terminates one message of each
// kind — not a CloudEvent, a permanent error, a panic, deliveries exhausted —
// and finds each in COUNCIL_DLQ with its reason and its original bytes; a
// replay republishes the original event, which the (now healed) handler
// takes; replaying it again publishes nothing more.
func TestTerminatedEventsGoToTheDeadLetterStream(t *testing.T) {
	e := newEnv(t)
	ctx := ctxTimeout(t)
	if info, err := e.js.Stream(ctx, natsjs.DefaultDLQStream); err != nil {
		t.Fatalf("Setup made no %s: %v", natsjs.DefaultDLQStream, err)
	} else if diff := cmp.Diff([]string{"council.dlq.>"}, info.CachedInfo().Config.Subjects); diff != "" {
		t.Errorf("dead-letter subjects (-want +got):\n%s", diff)
	}
	pub := newPublisher(t, e.js)
	var healed atomic.Bool
	r := newRecorder(func(_ context.Context, _ int, ev event.Event) (*event.Event, error) {
		switch {
		case healed.Load():
			return nil, nil
		case ev.ID() == "ev-perm":
			return nil, council.Invalidf("task refused")
		case ev.ID() == "ev-panic":
			panic("boom")
		case ev.ID() == "ev-down":
			return nil, council.Unavailablef("llm down")
		}
		return nil, nil
	})
	startConsumer(t, e.js, newConsumer(t, e.js, r, natsjs.WithMaxDeliver(2)))

	garbage := []byte("this is not JSON\n")
	if _, err := e.js.Publish(ctx, "council.events."+testType, garbage); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"ev-perm", "ev-panic", "ev-down", "ev-good"} {
		emit(t, pub, id)
	}
	waitSettled(t, e.js, 5)

	got := deadLetters(t, e.js, 4)
	byOutcome := map[string]natsjs.DeadLetter{}
	for _, dl := range got {
		byOutcome[dl.Outcome] = dl
		if dl.Consumer != durable || dl.Subject != "council.events."+testType || dl.Time.IsZero() {
			t.Errorf("dead letter %d: consumer %q subject %q time %v", dl.Seq, dl.Consumer, dl.Subject, dl.Time)
		}
	}
	for outcome, want := range map[string]struct {
		id, reason string
		delivered  uint64
	}{
		"rejected":   {"", "", 1},
		"terminated": {"ev-perm", "task refused", 1},
		"panic":      {"ev-panic", "handler panic: boom", 1},
		"exhausted":  {"ev-down", "after 2 deliveries", 2},
	} {
		dl, ok := byOutcome[outcome]
		if !ok {
			t.Errorf("no dead letter with outcome %s (got %v)", outcome, got)
			continue
		}
		if dl.EventID != want.id || !strings.Contains(dl.Reason, want.reason) || dl.Delivered != want.delivered {
			t.Errorf("%s: event %q reason %q delivered %d; want event %q, reason with %q, delivered %d",
				outcome, dl.EventID, dl.Reason, dl.Delivered, want.id, want.reason, want.delivered)
		}
		if dl.Reason == "" {
			t.Errorf("%s: dead letter without a reason", outcome)
		}
	}
	if !bytes.Equal(byOutcome["rejected"].Data, garbage) {
		t.Errorf("rejected message data %q, want the original %q", byOutcome["rejected"].Data, garbage)
	}

	// Show one, and one that is not there.
	perm := byOutcome["terminated"]
	shown, err := natsjs.GetDeadLetter(ctx, e.js, natsjs.Topology{}, perm.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(perm, shown); diff != "" {
		t.Errorf("GetDeadLetter differs from the listed one (-list +get):\n%s", diff)
	}
	if _, err := natsjs.GetDeadLetter(ctx, e.js, natsjs.Topology{}, 999); !errors.Is(err, council.ErrNotFound) {
		t.Errorf("GetDeadLetter(999) = %v, want ErrNotFound", err)
	}
	if only, err := natsjs.ListDeadLetters(ctx, e.js, natsjs.Topology{}, "execute", 0, 10); err != nil || len(only) != 0 {
		t.Errorf("dead letters of consumer execute: %v, %v; want none", only, err)
	}

	// Replay: the handler takes the event now.
	healed.Store(true)
	r.drain() // the five calls above, in whatever order the handlers ran
	calls := r.count()
	for range 2 {
		if _, err := natsjs.ReplayDeadLetter(ctx, e.js, natsjs.Topology{}, perm.Seq); err != nil {
			t.Fatalf("ReplayDeadLetter: %v", err)
		}
	}
	if got := r.next(t); got.ID() != "ev-perm" {
		t.Errorf("replayed event %q, want ev-perm", got.ID())
	}
	waitSettled(t, e.js, 6)
	if n := r.count() - calls; n != 1 {
		t.Errorf("a dead letter replayed twice was handled %d times, want once", n)
	}
	if _, err := natsjs.ReplayDeadLetter(ctx, e.js, natsjs.Topology{}, 999); !errors.Is(err, council.ErrNotFound) {
		t.Errorf("ReplayDeadLetter(999) = %v, want ErrNotFound", err)
	}
}

// TestDeadLetterStreamDownLosesNothing removes the dead-letter stream: a
// message to terminate is then delivered again instead of dropped, and
// lands in the dead-letter stream once it is back.
func TestDeadLetterStreamDownLosesNothing(t *testing.T) {
	e := newEnv(t)
	ctx := ctxTimeout(t)
	if err := e.js.DeleteStream(ctx, natsjs.DefaultDLQStream); err != nil {
		t.Fatal(err)
	}
	pub := newPublisher(t, e.js)
	r := newRecorder(func(context.Context, int, event.Event) (*event.Event, error) {
		return nil, council.Invalidf("refused")
	})
	startConsumer(t, e.js, newConsumer(t, e.js, r, natsjs.WithMaxDeliver(50)))
	emit(t, pub, "ev-1")
	r.next(t)
	r.next(t) // delivered again: not terminated without its dead letter
	if err := natsjs.Setup(ctx, e.js, natsjs.Topology{}); err != nil {
		t.Fatal(err)
	}
	got := deadLetters(t, e.js, 1)
	if got[0].EventID != "ev-1" || got[0].Outcome != "terminated" || got[0].Delivered < 2 {
		t.Errorf("dead letter %+v, want ev-1 terminated after at least 2 deliveries", got[0])
	}
	waitSettled(t, e.js, 1)
}
