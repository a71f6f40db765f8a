package execute_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"council.dev/events"
	"council.dev/functions/execute"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

type fakeTimer struct {
	mu  sync.Mutex
	set []timerCall
}

type timerCall struct {
	at time.Time
	e  council.Envelope
}

func (t *fakeTimer) At(_ context.Context, at time.Time, e council.Envelope) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.set = append(t.set, timerCall{at, e})
	return nil
}

// TestDeadlineTimerIsSetAndChecksItsDeliberation: accepting a request sets
// a timer at its deadline (a sweep.tick whose subject is the deliberation);
// that tick, once fired, fails the overdue deliberation alone.
func TestDeadlineTimerIsSetAndChecksItsDeliberation(t *testing.T) {
	ctx := context.Background()
	store, em, c := counciltest.NewStore(), &counciltest.Emitter{}, &clock{t0}
	timer := &fakeTimer{}
	f, err := execute.New(store, em, execute.WithClock(c.Now), execute.WithTimer(timer))
	if err != nil {
		t.Fatal(err)
	}
	req := fixture(t, "deliberation.requested.v1/valid/deliberation.json")
	if _, err := f.Handle(ctx, req); err != nil {
		t.Fatal(err)
	}
	id := council.DeliberationID(req.Source(), req.ID())
	d, _, err := store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(timer.set) != 1 || !timer.set[0].at.Equal(d.Deadline) || timer.set[0].e.Subject != id ||
		timer.set[0].e.Type != events.TypeSweepTick {
		t.Fatalf("timers set %+v, want one sweep.tick for %s at %s", timer.set, id, d.Deadline)
	}

	c.now = d.Deadline.Add(time.Second)
	if _, err := f.Handle(ctx, events.ToEvent(timer.set[0].e)); err != nil {
		t.Fatalf("the fired timer: %v", err)
	}
	sent := em.Sent()
	failed, err := events.DecodeFailed(events.ToEvent(sent[len(sent)-1]))
	if err != nil || !strings.Contains(failed.Reason, "timeout") {
		t.Fatalf("after the timer fired: %v %+v, want deliberation.failed by timeout", err, failed)
	}

	// A timer of a deliberation gone is nothing to do; a bad subject is invalid.
	gone := timer.set[0].e
	gone.Subject = "dlb-gone"
	if _, err := f.Handle(ctx, events.ToEvent(gone)); err != nil {
		t.Errorf("timer of an unknown deliberation: %v", err)
	}
	gone.Subject = "not an id"
	if _, err := f.Handle(ctx, events.ToEvent(gone)); !errors.Is(err, council.ErrInvalid) {
		t.Errorf("timer with a bad subject: %v, want ErrInvalid", err)
	}
}
