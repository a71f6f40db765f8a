package council

import (
	"slices"
	"time"
)

// Tally is the durable count of the deliberations that ended: how many
// completed and failed, the sum of their execution times and a histogram of
// them, kept as each one ends (execute's GET /status reads it instead of
// scanning every stored deliberation). Recent holds the ids of the last
// ends counted, so that counting an end again (a retried step) changes
// nothing.
type Tally struct {
	Completed int64
	Failed    int64
	// Total is the sum of the execution times of the counted ends.
	Total time.Duration
	// Buckets[i] counts the ends that took at most TallyBounds[i] (and more
	// than the bound before); the last bucket counts the longer ones.
	Buckets []int64
	Recent  []string
}

// TallyRecent is how many ids of recent ends a Tally keeps to recognise an
// end counted twice.
const TallyRecent = 1024

// TallyBounds are the upper bounds of the histogram buckets of a Tally:
// from 50 ms, each 25 % above the one before, up to beyond MaxTimeout.
var TallyBounds = func() []time.Duration {
	var out []time.Duration
	for b := 50 * time.Millisecond; b < 2*MaxTimeout; b = b * 5 / 4 {
		out = append(out, b)
	}
	return out
}()

// Count adds the end of d and reports whether the tally changed: false
// when d has not ended, or when its end is among the recent ones counted.
func (t *Tally) Count(d *Deliberation) bool {
	if !d.Status.Terminal() || slices.Contains(t.Recent, d.ID) {
		return false
	}
	if d.Status == StatusCompleted {
		t.Completed++
	} else {
		t.Failed++
	}
	took := max(d.FinishedAt.Sub(d.StartedAt), 0)
	if d.StartedAt.IsZero() || d.FinishedAt.IsZero() {
		took = 0
	}
	t.Total += took
	if len(t.Buckets) != len(TallyBounds)+1 {
		t.Buckets = append(t.Buckets, make([]int64, len(TallyBounds)+1-len(t.Buckets))...)
	}
	i, _ := slices.BinarySearch(TallyBounds, took)
	t.Buckets[i]++
	t.Recent = append(t.Recent, d.ID)
	if n := len(t.Recent) - TallyRecent; n > 0 {
		t.Recent = slices.Delete(t.Recent, 0, n)
	}
	return true
}

// Ended is how many ends the tally counts.
func (t Tally) Ended() int64 { return t.Completed + t.Failed }

// Mean is the mean execution time of the counted ends (0 when none).
func (t Tally) Mean() time.Duration {
	if t.Ended() == 0 {
		return 0
	}
	return t.Total / time.Duration(t.Ended())
}

// Percentile is the nearest-rank p-th percentile of the execution times,
// as the upper bound of its histogram bucket (at most 25 % above the true
// value); 0 when nothing ended.
func (t Tally) Percentile(p float64) time.Duration {
	n := t.Ended()
	if n == 0 {
		return 0
	}
	rank := max(int64(p/100*float64(n)+0.999999), 1)
	var seen int64
	for i, c := range t.Buckets {
		seen += c
		if seen >= rank {
			if i < len(TallyBounds) {
				return TallyBounds[i]
			}
			break
		}
	}
	return TallyBounds[len(TallyBounds)-1]
}
