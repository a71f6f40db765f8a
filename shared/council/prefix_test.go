package council_test

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// finishCached answers d's work until it ends, each answer reporting a
// quarter of its prompt tokens as cached.
func finishCached(t testing.TB, d *council.Deliberation) {
	t.Helper()
	for !d.Status.Terminal() {
		keys := slices.Clone(d.Outbox)
		if len(keys) == 0 {
			t.Fatalf("deliberation waits in stage %d %s with nothing to send", d.Stage, d.Phase)
		}
		for _, k := range keys {
			d.Acknowledge(k)
			w, ok := d.Work[k]
			if !ok {
				continue
			}
			var err error
			if w.Kind == council.WorkProposal {
				p := counciltest.ProposalFor(*w)
				p.Usage.CachedTokens = p.Usage.PromptTokens / 4
				_, err = d.RecordProposal(k, p, t0)
			} else {
				c := counciltest.CritiqueFor(*w, d.Task.Constraints.Rubric)
				c.Usage.CachedTokens = c.Usage.PromptTokens / 4
				_, err = d.RecordCritique(k, c, t0)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}

// bruteSharedPrefix is the shared prefix measure by its definition: each
// call's longest common prefix with any earlier call, by comparing it with
// every one.
func bruteSharedPrefix(t *testing.T, d *council.Deliberation) (shared, total int64) {
	t.Helper()
	var works []*council.Work
	for _, w := range d.Work {
		works = append(works, w)
	}
	slices.SortFunc(works, func(a, b *council.Work) int {
		if c := a.RequestedAt.Compare(b.RequestedAt); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	var earlier []string
	for _, w := range works {
		var p string
		if w.Kind == council.WorkProposal {
			r, err := d.ProposalRequest(w.Key)
			if err != nil {
				t.Fatal(err)
			}
			p = council.RenderPrompt(council.ProposalMessages(r))
		} else {
			r, err := d.CritiqueRequest(w.Key)
			if err != nil {
				t.Fatal(err)
			}
			p = council.RenderPrompt(council.CritiqueMessages(r))
		}
		best := 0
		for _, e := range earlier {
			n := 0
			for n < len(e) && n < len(p) && e[n] == p[n] {
				n++
			}
			best = max(best, n)
		}
		earlier = append(earlier, p)
		shared += int64(best)
		total += int64(len(p))
	}
	return shared, total
}

// TestPromptCacheMeasuredAtCompletion: the completed result reports the
// cached share of the prompt tokens and the share of prompt bytes in a
// prefix shared with an earlier call, as the definition computes them.
func TestPromptCacheMeasuredAtCompletion(t *testing.T) {
	for _, n := range []int{1, 3, 9} {
		task := counciltest.Task()
		task.Description = strings.Repeat("Keep a token bucket per API key. ", 256) // 8 KiB
		task.Agents = agents(n)
		d, err := council.New("dlb-prefix", task, t0)
		if err != nil {
			t.Fatal(err)
		}
		finishCached(t, d)
		if d.Status != council.StatusCompleted {
			t.Fatalf("%d agents: status %s (%s)", n, d.Status, d.Reason)
		}
		pc := d.Result.PromptCache
		if pc.CachedTokenShare != 0.25 {
			t.Errorf("%d agents: cached token share %v, want 0.25", n, pc.CachedTokenShare)
		}
		shared, total := bruteSharedPrefix(t, d)
		if pc.Unmeasured != 0 || pc.PromptBytes != total || pc.SharedPrefixBytes != shared {
			t.Errorf("%d agents: measured %d of %d bytes shared (%d unmeasured), want %d of %d", n, pc.SharedPrefixBytes, pc.PromptBytes, pc.Unmeasured, shared, total)
		}
		if want := float64(shared) / float64(total); math.Abs(pc.SharedPrefixShare-want) > 1e-12 {
			t.Errorf("%d agents: shared prefix share %v, want %v", n, pc.SharedPrefixShare, want)
		}
		// The 8 KiB task opens every prompt: after the first call, most
		// of each prompt is shared.
		if n == 1 { // a single call shares nothing
			if pc.SharedPrefixShare != 0 {
				t.Errorf("1 agent: shared prefix share %v, want 0", pc.SharedPrefixShare)
			}
		} else if pc.SharedPrefixShare < 0.5 || pc.SharedPrefixShare >= 1 {
			t.Errorf("%d agents: shared prefix share %v, want in [0.5, 1)", n, pc.SharedPrefixShare)
		}
		t.Logf("%d agents: %d calls, shared prefix share %.3f", n, len(d.Work), pc.SharedPrefixShare)
	}
}

// TestPromptCacheCountsWhatItCanRebuild: an answer whose work is no longer
// known is counted as unmeasured, not guessed; no prompt tokens means a
// cached share of 0.
func TestPromptCacheCountsWhatItCanRebuild(t *testing.T) {
	d, err := council.New("dlb-prefix", counciltest.Task(), t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := counciltest.Finish(d, t0); err != nil {
		t.Fatal(err)
	}
	lost := d.Clone()
	for k, w := range lost.Work {
		if w.Kind == council.WorkCritique {
			delete(lost.Work, k)
			break
		}
	}
	for k, p := range lost.Proposals {
		p.Usage = council.Usage{}
		lost.Proposals[k] = p
	}
	for k, c := range lost.Critiques {
		c.Usage = council.Usage{}
		lost.Critiques[k] = c
	}
	pc := council.PromptCacheOf(lost)
	full := council.PromptCacheOf(d)
	if pc.Unmeasured != 1 || pc.CachedTokenShare != 0 || pc.PromptBytes >= full.PromptBytes || full.Unmeasured != 0 {
		t.Errorf("with one work forgotten: %+v; in full: %+v", pc, full)
	}
}

// BenchmarkPromptCache81Agents measures the prefix measure of an 81-agent
// deliberation with an 8 KiB task (3 agents in the baseline), done once at
// completion: compare with the transition of one result (docs/benchmarks.md).
func BenchmarkPromptCache81Agents(b *testing.B) {
	for _, n := range []int{3, 81} {
		task := counciltest.Task()
		task.Description = strings.Repeat("Keep a token bucket per API key. ", 256)
		task.Agents = agents(n)
		d, err := council.New("dlb-prefix", task, t0)
		if err != nil {
			b.Fatal(err)
		}
		finishCached(b, d)
		b.Run("agents="+strconv.Itoa(n), func(b *testing.B) {
			var pc council.PromptCache
			for b.Loop() {
				pc = council.PromptCacheOf(d)
			}
			b.ReportMetric(float64(len(d.Work)), "calls")
			b.ReportMetric(pc.SharedPrefixShare, "shared-prefix-share")
		})
	}
}
