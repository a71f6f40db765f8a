package council_test

import (
	"testing"
	"time"

	"council.dev/shared/council"
)

func TestTallyCountsEachEndOnce(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	var tally council.Tally
	end := func(id string, took time.Duration, ok bool) *council.Deliberation {
		d := &council.Deliberation{ID: id, Status: council.StatusFailed, StartedAt: t0, FinishedAt: t0.Add(took)}
		if ok {
			d.Status = council.StatusCompleted
		}
		return d
	}
	for i, took := range []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 4 * time.Second, 100 * time.Second} {
		if !tally.Count(end(string(rune('a'+i)), took, i != 4)) {
			t.Fatalf("end %d not counted", i)
		}
	}
	if tally.Count(end("a", time.Hour, true)) {
		t.Error("the same end counted twice")
	}
	if tally.Count(&council.Deliberation{ID: "running", Status: council.StatusRunning}) {
		t.Error("a running deliberation counted as ended")
	}
	if tally.Completed != 4 || tally.Failed != 1 {
		t.Errorf("completed %d, failed %d; want 4, 1", tally.Completed, tally.Failed)
	}
	if got := tally.Mean(); got != 22*time.Second {
		t.Errorf("mean %s, want 22s", got)
	}
	// Nearest rank: p50 is the 3rd of 5 (3 s), p95 the 5th (100 s); each
	// is given as its bucket's upper bound, at most 25 % above.
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{50, 3 * time.Second}, {95, 100 * time.Second}} {
		got := tally.Percentile(tc.p)
		if got < tc.want || got > tc.want*5/4 {
			t.Errorf("p%.0f = %s, want within [%s, %s]", tc.p, got, tc.want, tc.want*5/4)
		}
	}
	if (council.Tally{}).Percentile(50) != 0 || (council.Tally{}).Mean() != 0 {
		t.Error("an empty tally has no mean nor percentile")
	}
}

func TestTallyForgetsOnlyOldIDs(t *testing.T) {
	var tally council.Tally
	for i := range council.TallyRecent + 10 {
		tally.Count(&council.Deliberation{ID: "d" + string(rune(i)), Status: council.StatusCompleted})
	}
	if len(tally.Recent) != council.TallyRecent {
		t.Errorf("%d recent ids kept, want %d", len(tally.Recent), council.TallyRecent)
	}
}
