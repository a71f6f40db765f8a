package execute_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"council.dev/events"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// TestSweepGoesOnPastAValueThatDoesNotDecode: one stored value that no
// longer decodes is set aside; the sweep still fails the overdue
// deliberation as a timeout (it used to stop at the bad value, and the
// deliberation ended much later as "all agents failed"), and /status counts
// what was set aside.
func TestSweepGoesOnPastAValueThatDoesNotDecode(t *testing.T) {
	ctx := context.Background()
	store, em, c := counciltest.NewStore(), &counciltest.Emitter{}, &clock{t0}
	f := newFunction(t, store, em, c)
	req := fixture(t, "deliberation.requested.v1/valid/deliberation.json")
	if _, err := f.Handle(ctx, req); err != nil {
		t.Fatal(err)
	}
	bad, err := council.New("dlb-aaa-spoiled", counciltest.Task(), t0) // listed first
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create(ctx, bad); err != nil {
		t.Fatal(err)
	}
	store.Corrupt(bad.ID)

	c.now = t0.Add(11 * time.Minute)
	if _, err := f.Handle(ctx, fixture(t, "sweep.tick.v1/valid/tick.json")); err != nil {
		t.Fatalf("sweep with a spoiled value: %v", err)
	}
	sent := em.Sent()
	failed, err := events.DecodeFailed(events.ToEvent(sent[len(sent)-1]))
	if err != nil {
		t.Fatalf("last event is not deliberation.failed: %v", err)
	}
	if !strings.Contains(failed.Reason, "timeout") {
		t.Errorf("reason %q, want the timeout", failed.Reason)
	}
	status := f.Status(ctx)
	if status.Stats == nil || status.Stats.Quarantined != 1 {
		t.Errorf("status stats = %+v, want 1 quarantined", status.Stats)
	}
}
