package events_test

import (
	"fmt"
	"testing"
	"time"

	"council.dev/events"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// TestLiveStateQueueWait: a call whose answer says when its LLM call
// started shows that time and its queue wait (started less requested,
// never below 0: the worker's clock may lag execute's); one whose answer
// does not say, and a pending one, show neither.
func TestLiveStateQueueWait(t *testing.T) {
	d, err := council.New("dlb-live", counciltest.Task(), t0)
	if err != nil {
		t.Fatal(err)
	}
	keys := d.Outbox
	if len(keys) < 3 {
		t.Fatalf("%d proposals requested, want 3", len(keys))
	}
	starts := map[string]time.Time{keys[0]: t0.Add(250 * time.Millisecond), keys[1]: t0.Add(-time.Second)}
	for _, k := range keys[:3] {
		w := *d.Work[k]
		p := counciltest.ProposalFor(w)
		p.StartedAt = starts[k]
		if _, err := d.RecordProposal(k, p, t0.Add(2*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	calls := map[string]events.Call{}
	for _, c := range events.NewLiveState(d, 1, events.DeliberationView{}).Calls {
		calls[c.Key] = c
	}
	wait := func(k string) string {
		c := calls[k]
		if c.QueueWaitMS == nil || c.StartedAt == nil {
			return fmt.Sprintf("none (%v, %v)", c.QueueWaitMS, c.StartedAt)
		}
		return time.Duration(*c.QueueWaitMS*int64(time.Millisecond)).String() + " at " + c.StartedAt.String()
	}
	for k, want := range map[string]string{
		keys[0]: "250ms at " + t0.Add(250*time.Millisecond).UTC().String(),
		keys[1]: "0s at " + t0.Add(-time.Second).UTC().String(),
		keys[2]: "none (<nil>, <nil>)",
	} {
		if got := wait(k); got != want {
			t.Errorf("call %s: queue wait %s, want %s", k, got, want)
		}
	}
}
