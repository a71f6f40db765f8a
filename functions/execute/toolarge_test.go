package execute_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"

	"council.dev/events"
	"council.dev/functions/execute"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// sizeLimitEmitter refuses, as the broker does, events of some types as
// too large.
type sizeLimitEmitter struct {
	counciltest.Emitter
	mu      sync.Mutex
	refuse  map[string]bool
	refused int
}

func (e *sizeLimitEmitter) Emit(ctx context.Context, env council.Envelope) error {
	e.mu.Lock()
	refuse := e.refuse[env.Type]
	if refuse {
		e.refused++
	}
	e.mu.Unlock()
	if refuse {
		return council.TooLargef("event %s is 2000000 bytes, more than the broker takes (max_payload 1048576 bytes)", env.ID)
	}
	return e.Emitter.Emit(ctx, env)
}

// TestResultTooLargeFailsFastNamingTheLimit: a result the broker cannot
// take fails the deliberation at once, with a reason naming the limit, and
// is not tried again (it used to be retried as transient until the
// deadline, and then reported as a timeout).
func TestResultTooLargeFailsFastNamingTheLimit(t *testing.T) {
	ctx := context.Background()
	store, c := counciltest.NewStore(), &clock{t0}
	em := &sizeLimitEmitter{refuse: map[string]bool{events.TypeDeliberationCompleted: true}}
	f := newFunction(t, store, em, c)
	req := fixture(t, "deliberation.requested.v1/valid/deliberation.json")
	if _, err := f.Handle(ctx, req); err != nil {
		t.Fatal(err)
	}
	id := council.DeliberationID(req.Source(), req.ID())
	for range 20 {
		d, _, err := store.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if d.Status.Terminal() {
			break
		}
		for _, w := range d.Pending() {
			var ev council.Envelope
			if w.Kind == council.WorkProposal {
				r, _ := d.ProposalRequest(w.Key)
				ev = events.NewProposalGenerated("council.dev/generate", r, counciltest.ProposalFor(*w), t0)
			} else {
				r, _ := d.CritiqueRequest(w.Key)
				ev = events.NewCritiqueCompleted("council.dev/critique", r, counciltest.CritiqueFor(*w, d.Task.Constraints.Rubric), t0)
			}
			if _, err := f.Handle(ctx, events.ToEvent(ev)); err != nil {
				t.Fatalf("result %s: %v", w.Key, err)
			}
		}
	}
	d, _, err := store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != council.StatusFailed || !strings.Contains(d.Reason, "max_payload 1048576") || len(d.Outbox) != 0 {
		t.Fatalf("status %s, reason %q, outbox %v; want failed naming the limit, nothing owed", d.Status, d.Reason, d.Outbox)
	}
	types := em.Types()
	if types[len(types)-1] != events.TypeDeliberationFailed {
		t.Errorf("last event %s, want deliberation.failed", types[len(types)-1])
	}
	if em.refused != 1 {
		t.Errorf("the completed event was tried %d times, want once", em.refused)
	}
}

// TestRequestLargerThanTheBrokerTakesIsRefusedAtOnce: with the broker's
// max_payload known, a request whose result could not fit in
// deliberation.completed is refused when it arrives, naming the limit.
func TestRequestLargerThanTheBrokerTakesIsRefusedAtOnce(t *testing.T) {
	store, em, c := counciltest.NewStore(), &counciltest.Emitter{}, &clock{t0}
	f, err := execute.New(store, em, execute.WithClock(c.Now), execute.WithMaxEventBytes(256<<10))
	if err != nil {
		t.Fatal(err)
	}
	task := counciltest.Task()
	// 3 agents × 2 stages × max_tokens × 4 B, + critiques: 6000 ≈ 153 KiB, 16000 ≈ 387 KiB
	for _, tc := range []struct {
		tokens int
		ok     bool
	}{{6000, true}, {16000, false}} {
		task.Constraints.MaxTokens = tc.tokens
		req := events.ToEvent(events.NewRequest("council.dev/test", "big-"+strconv.Itoa(tc.tokens), task, t0))
		_, err := f.Handle(context.Background(), req)
		switch {
		case tc.ok && err != nil:
			t.Errorf("max_tokens %d: %v, want accepted", tc.tokens, err)
		case !tc.ok && (!errors.Is(err, council.ErrInvalid) || !strings.Contains(err.Error(), "max_payload of 256 KiB")):
			t.Errorf("max_tokens %d: %v, want refused naming the broker's max_payload", tc.tokens, err)
		}
	}
}
