package council_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// fourAgents is counciltest.Task with a fourth agent.
func fourAgents() council.Task {
	task := counciltest.Task()
	task.Agents = append(task.Agents, council.Agent{ID: "agent-dev-001", Role: "DEV"})
	return task
}

const dev = "agent-dev-001"

// split is a final review where mean and Borda disagree: devops scores qa
// 1.0 and everything else low, so qa leads on the mean (0.7 against
// architect's 0.5) while Borda, which only counts each reviewer's order,
// ties architect, qa and devops at 2/3 (architect first: task order).
var split = map[string]map[string]float64{ // reviewer → author → overall
	archi:  {qa: 1.0, devops: 0.8, dev: 0.1},
	qa:     {archi: 0.6, devops: 0.7, dev: 0.5},
	devops: {archi: 0.3, qa: 1.0, dev: 0.2},
	dev:    {archi: 0.6, qa: 0.1, devops: 0.4},
}

func splitScore(w council.Work) float64 {
	if w.Stage == 0 {
		return 0.5
	}
	return split[w.AgentID][w.AuthorID]
}

func TestFinalReviewByAllPairs(t *testing.T) {
	d := newDeliberation(t, fourAgents())
	waves := drive(t, d, at(9), plan{score: splitScore})
	if d.Status != council.StatusCompleted {
		t.Fatalf("status %s (%s), want completed", d.Status, d.Reason)
	}
	// Stage 0 is reviewed by the ring (4 critiques), the final stage by
	// every other agent (4 × 3).
	if got := []int{len(waves[1]), len(waves[3])}; !cmp.Equal(got, []int{4, 12}) {
		t.Errorf("critiques of stage 0 and 1 = %v, want [4 12]", got)
	}
	r := d.Result
	want := []rank{
		{Rank: 1, Agent: qa, Stage: 1, Score: 0.7, Scored: true, Reviewers: []string{archi, dev, devops}},
		{Rank: 2, Agent: devops, Stage: 1, Score: 1.9 / 3, Scored: true, Reviewers: []string{archi, dev, qa}},
		{Rank: 3, Agent: archi, Stage: 1, Score: 0.5, Scored: true, Reviewers: []string{dev, devops, qa}},
		{Rank: 4, Agent: dev, Stage: 1, Score: 0.8 / 3, Scored: true, Reviewers: []string{archi, devops, qa}},
	}
	if diff := cmp.Diff(want, ranks(r), approx); diff != "" {
		t.Errorf("ranking (-want +got):\n%s", diff)
	}
	if r.Aggregation != council.AggregationMean {
		t.Errorf("aggregation %q, want mean", r.Aggregation)
	}
	// Spread: qa got 1.0, 1.0 and 0.1.
	if r.Ranking[0].ScoreSpread < 0.9-1e-9 || r.Ranking[0].ScoreSpread > 0.9+1e-9 {
		t.Errorf("qa's score spread %v, want 0.9", r.Ranking[0].ScoreSpread)
	}
	// The reviewers' orders (1 = best): archi qa>devops>dev, qa
	// devops>archi>dev, devops qa>archi>dev, dev archi>devops>qa. Rank
	// sums: archi 2+2+1 = 5, qa 1+1+3 = 5, devops 2+1+2 = 5, dev 3+3+3 = 9
	// around 6: S = 12, W = 12·12 / (2²·4·15) = 0.6.
	if r.Raters != 4 || r.Agreement < 0.6-1e-9 || r.Agreement > 0.6+1e-9 {
		t.Errorf("agreement %v over %d rankings, want 0.6 over 4", r.Agreement, r.Raters)
	}
}

func TestAggregations(t *testing.T) {
	tests := []struct {
		agg    council.Aggregation
		winner string
		scores map[string]float64
	}{
		{council.AggregationMean, qa, map[string]float64{archi: 0.5, qa: 0.7, devops: 1.9 / 3, dev: 0.8 / 3}},
		// Borda, points 1, ½, 0 by each reviewer's order: archi ½+½+1,
		// qa 1+1+0, devops ½+1+½, dev 0, over 3 reviewers.
		{council.AggregationBorda, archi, map[string]float64{archi: 2.0 / 3, qa: 2.0 / 3, devops: 2.0 / 3, dev: 0}},
		// No reviewer states a confidence: every weight is 1, the mean.
		{council.AggregationConfidence, qa, map[string]float64{archi: 0.5, qa: 0.7, devops: 1.9 / 3, dev: 0.8 / 3}},
	}
	for _, tt := range tests {
		t.Run(string(tt.agg), func(t *testing.T) {
			task := fourAgents()
			task.Constraints.Aggregation = tt.agg
			d := newDeliberation(t, task)
			drive(t, d, at(9), plan{score: splitScore})
			got := map[string]float64{}
			for _, rk := range d.Result.Ranking {
				got[rk.Proposal.AgentID] = rk.Score
			}
			if diff := cmp.Diff(tt.scores, got, approx); diff != "" {
				t.Errorf("scores (-want +got):\n%s", diff)
			}
			if d.Result.Winner != tt.winner || d.Result.Aggregation != tt.agg {
				t.Errorf("winner %s by %q, want %s by %q", d.Result.Winner, d.Result.Aggregation, tt.winner, tt.agg)
			}
		})
	}
}

func confident(reviewer, author string, overall, confidence float64) council.Critique {
	c := council.Critique{ReviewerID: reviewer, AuthorID: author, Overall: overall, Scores: map[string]float64{"correctness": overall}}
	if confidence >= 0 {
		c.Confidence = &confidence
	}
	return c
}

// completed is a completed deliberation of counciltest.Task whose result
// holds ranking (in any order).
func completed(ranking ...council.Ranked) *council.Deliberation {
	d := &council.Deliberation{ID: "dlb-done", Task: counciltest.Task().WithDefaults(), Status: council.StatusCompleted}
	d.Result = &council.Result{Ranking: ranking, Winner: ranking[0].Proposal.AgentID, Aggregation: council.AggregationMean}
	return d
}

func TestRerankConfidence(t *testing.T) {
	// archi: 0.9 said with confidence 0.1 and 0.3 with 0.9: mean 0.6, by
	// confidence (0.09 + 0.27) / 1.0 = 0.36. qa: 0.5 twice, one critique
	// without a confidence (weight 1). devops: stated confidence 0 twice:
	// the plain mean.
	d := completed(
		council.Ranked{Rank: 1, Proposal: council.Proposal{AgentID: archi}, Scored: true, Critiques: []council.Critique{
			confident(qa, archi, 0.9, 0.1), confident(devops, archi, 0.3, 0.9)}},
		council.Ranked{Rank: 2, Proposal: council.Proposal{AgentID: qa}, Scored: true, Critiques: []council.Critique{
			confident(archi, qa, 0.5, 1), confident(devops, qa, 0.5, -1)}},
		council.Ranked{Rank: 3, Proposal: council.Proposal{AgentID: devops}, Scored: true, Critiques: []council.Critique{
			confident(archi, devops, 0.4, 0), confident(qa, devops, 0.2, 0)}},
	)
	before := d.Clone()
	r, err := council.Rerank(d, council.AggregationConfidence)
	if err != nil {
		t.Fatal(err)
	}
	want := []rank{
		{Rank: 1, Agent: qa, Score: 0.5, Scored: true, Reviewers: []string{archi, devops}},
		{Rank: 2, Agent: archi, Score: 0.36, Scored: true, Reviewers: []string{qa, devops}},
		{Rank: 3, Agent: devops, Score: 0.3, Scored: true, Reviewers: []string{archi, qa}},
	}
	if diff := cmp.Diff(want, ranks(&r), approx); diff != "" {
		t.Errorf("ranking (-want +got):\n%s", diff)
	}
	if r.Winner != qa || r.Aggregation != council.AggregationConfidence {
		t.Errorf("winner %s by %q, want %s by confidence", r.Winner, r.Aggregation, qa)
	}
	if got := r.Ranking[1].Scores["correctness"]; got < 0.36-1e-9 || got > 0.36+1e-9 {
		t.Errorf("archi's correctness %v, want 0.36, weighted like overall", got)
	}
	if diff := cmp.Diff(before, d, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Rerank changed the deliberation (-before +after):\n%s", diff)
	}
	// Back to the mean: archi leads again.
	r, err = council.Rerank(d, council.AggregationMean)
	if err != nil || r.Winner != archi {
		t.Errorf("Rerank(mean) winner %s, %v; want %s", r.Winner, err, archi)
	}
}

func TestRerankReproducesTheRanking(t *testing.T) {
	for _, agg := range []council.Aggregation{council.AggregationMean, council.AggregationBorda, council.AggregationConfidence} {
		t.Run(string(agg), func(t *testing.T) {
			task := fourAgents()
			task.Constraints.Aggregation = agg
			d := newDeliberation(t, task)
			drive(t, d, at(9), plan{score: splitScore})
			r, err := council.Rerank(d, agg)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(*d.Result, r); diff != "" {
				t.Errorf("Rerank with the deliberation's own aggregation (-stored +reranked):\n%s", diff)
			}
		})
	}
}

func TestRerankRefuses(t *testing.T) {
	running := newDeliberation(t, counciltest.Task())
	if _, err := council.Rerank(running, council.AggregationBorda); !errors.Is(err, council.ErrConflict) {
		t.Errorf("Rerank(running) = %v, want ErrConflict", err)
	}
	done := completed(council.Ranked{Proposal: council.Proposal{AgentID: archi}})
	_, err := council.Rerank(done, "median")
	if !errors.Is(err, council.ErrInvalid) || council.Retryable(err) {
		t.Errorf("Rerank(median) = %v, want a permanent ErrInvalid", err)
	}
}

func TestBordaOverTheRingLeavesProposalsUnscored(t *testing.T) {
	// One critique per reviewer: no reviewer ranks two proposals, so Borda
	// has nothing to count; the proposals keep the task's order.
	task := counciltest.Task()
	task.Constraints.Aggregation, task.Constraints.FinalReview = council.AggregationBorda, council.FinalReviewPeers
	d := newDeliberation(t, task)
	drive(t, d, at(9), plan{score: func(w council.Work) float64 { return map[string]float64{devops: 0.9}[w.AuthorID] }})
	for _, rk := range d.Result.Ranking {
		if rk.Scored || rk.Score != 0 {
			t.Errorf("%s scored %v (%v), want unscored at 0", rk.Proposal.AgentID, rk.Scored, rk.Score)
		}
	}
	if d.Result.Winner != archi || d.Result.Raters != 0 {
		t.Errorf("winner %s, agreement over %d rankings; want %s (task order), none", d.Result.Winner, d.Result.Raters, archi)
	}
}

func TestLargeCouncilReviewsByPeers(t *testing.T) {
	task := counciltest.Task()
	task.Agents = nil
	for i := range council.MaxAllPairsAgents + 1 {
		task.Agents = append(task.Agents, council.Agent{ID: "a" + string(rune('a'+i)), Role: "DEV"})
	}
	d := newDeliberation(t, task)
	if d.Task.Constraints.FinalReview != council.FinalReviewPeers {
		t.Fatalf("final review %q, want peers above %d agents", d.Task.Constraints.FinalReview, council.MaxAllPairsAgents)
	}
	waves := drive(t, d, at(9), plan{})
	if n := len(waves[3]); n != council.MaxAllPairsAgents+1 {
		t.Errorf("%d critiques in the final review, want one per proposal (%d)", n, council.MaxAllPairsAgents+1)
	}
}

func TestConfidenceOutsideZeroOneIsAFailedAttempt(t *testing.T) {
	task := counciltest.Task()
	task.Constraints.MaxRetries = 0
	d := newDeliberation(t, task)
	for _, k := range send(d) {
		recordProposal(t, d, k, prop(d.Work[k].AgentID, 0), at(1))
	}
	keys := send(d)
	w := d.Work[keys[0]]
	c := crit(w.AgentID, 0.5)
	bad := 1.5
	c.Confidence = &bad
	recordCritique(t, d, keys[0], c, at(2))
	if got := d.Work[keys[0]]; got.State != council.WorkFailed || got.LastError != "score confidence=1.5 is outside [0,1]" {
		t.Errorf("work %s: %s (%q), want failed: confidence outside [0,1]", keys[0], got.State, got.LastError)
	}
}

func TestRerankKeepsWhatNoReviewDecided(t *testing.T) {
	// A vote decided: no critiques, the stored order (qa first) stands.
	voted := completed(
		council.Ranked{Rank: 1, Proposal: council.Proposal{AgentID: qa}},
		council.Ranked{Rank: 2, Proposal: council.Proposal{AgentID: archi}},
	)
	voted.Result.Winner = qa
	r, err := council.Rerank(voted, council.AggregationBorda)
	if err != nil || r.Winner != qa || r.Ranking[0].Proposal.AgentID != qa || r.Aggregation != council.AggregationBorda {
		t.Errorf("Rerank of a voted result: winner %s, first %s, %q, %v; want qa first, unchanged", r.Winner, r.Ranking[0].Proposal.AgentID, r.Aggregation, err)
	}
	// Protocol judge: the judge's answer stays the winner.
	judged := completed(
		council.Ranked{Rank: 1, Proposal: council.Proposal{AgentID: archi}, Scored: true, Critiques: []council.Critique{confident(qa, archi, 0.9, -1)}},
		council.Ranked{Rank: 2, Proposal: council.Proposal{AgentID: qa}, Scored: true, Critiques: []council.Critique{confident(archi, qa, 0.1, -1)}},
	)
	judged.Result.Protocol, judged.Result.Final, judged.Result.Winner = council.ProtocolJudge, &council.Final{AgentID: devops}, devops
	if r, err := council.Rerank(judged, council.AggregationMean); err != nil || r.Winner != devops || r.Ranking[0].Proposal.AgentID != archi {
		t.Errorf("Rerank of a judged result: winner %s, first %s, %v; want the judge %s, archi first", r.Winner, r.Ranking[0].Proposal.AgentID, err, devops)
	}
}
