package council

import (
	"fmt"
	"slices"
	"sort"
)

// Aggregation says how the final review's critiques make one score per
// final proposal (constraints.aggregation).
type Aggregation string

// Aggregations.
const (
	// AggregationMean (the default) scores a proposal by the mean overall
	// score of its critiques.
	AggregationMean Aggregation = "mean"
	// AggregationBorda scores a proposal by Borda count: each reviewer
	// ranks the proposals it reviewed by overall score, a proposal gets
	// k−1 … 0 points from a reviewer that ranked k of them (tied proposals
	// share their points), divided by k−1 so that every reviewer weighs
	// the same whatever k, and averaged over the reviewers that ranked it.
	// A reviewer that ranked a single proposal gives no points: a proposal
	// no reviewer ranked with another is unscored.
	AggregationBorda Aggregation = "borda"
	// AggregationConfidence scores a proposal by the mean overall score of
	// its critiques, each weighted by the confidence its reviewer stated
	// (Critique.Confidence; 1 when the critique states none), after
	// ReConcile's confidence-weighted vote.
	AggregationConfidence Aggregation = "confidence"
)

// Valid reports whether a is a known aggregation.
func (a Aggregation) Valid() bool {
	return a == AggregationMean || a == AggregationBorda || a == AggregationConfidence
}

// FinalReview says who reviews the final proposals (constraints.final_review).
type FinalReview string

// Final reviews.
const (
	// FinalReviewAll (the default up to MaxAllPairsAgents agents) has every
	// surviving agent review every other final proposal. With one score
	// per reviewer (the ring) proposals are scored by different reviewers
	// on different scales, and a reviewer's scale cannot be normalized from
	// one score; all pairs give every reviewer a ranking of all the other
	// proposals, which puts every proposal before the same reviewers (all
	// but its author), and which Borda and Kendall's W need.
	FinalReviewAll FinalReview = "all"
	// FinalReviewPeers reviews the final proposals like the earlier
	// stages: each by the next `peers` agents in ring order (n × peers
	// critiques instead of n × (n−1)); scores are then on the reviewers'
	// own scales and there is no agreement score unless peers = n−1.
	FinalReviewPeers FinalReview = "peers"
)

// MaxAllPairsAgents bounds the agents of a final review by all pairs:
// n × (n−1) critiques, 240 at 16 agents (the ring asks 16). A larger
// council defaults to FinalReviewPeers; asking for FinalReviewAll with more
// agents is invalid (with 128 agents it would be 16,256 critiques).
const MaxAllPairsAgents = 16

// Valid reports whether f is a known final review.
func (f FinalReview) Valid() bool { return f == FinalReviewAll || f == FinalReviewPeers }

// reviewersPerProposal is how many reviewers critique each of the n
// proposals of stage: every other agent at the final stage (stage ≥ rounds)
// under FinalReviewAll, peers (at most n−1) otherwise.
func (d *Deliberation) reviewersPerProposal(stage, n int) int {
	c := d.Task.Constraints
	if n < 2 || d.Task.Kind.SinglePass() {
		return 0
	}
	// The protocols other than critique_revise critique only in their
	// final review.
	final := stage >= c.Rounds || d.protocol() != ProtocolCritiqueRevise
	if final && c.FinalReview == FinalReviewAll {
		return n - 1
	}
	return min(c.Peers, n-1)
}

// Rerank recomputes the ranking of completed deliberation d with
// aggregation a from the critiques its result holds, without any new call:
// the proposals, critiques, history and usage of the result are kept; the
// order, scores, agreement and Aggregation change (a ranking no review
// scored, as when a vote decided, keeps its order; under protocol judge the
// judge stays the winner). It returns an error
// wrapping ErrInvalid for an unknown aggregation and one wrapping
// ErrConflict when d has no result (it has not completed). d is not
// changed.
func Rerank(d *Deliberation, a Aggregation) (Result, error) {
	if !a.Valid() {
		return Result{}, Invalidf("aggregation %q is unknown (want mean, borda or confidence)", a)
	}
	if d == nil || d.Result == nil {
		id := ""
		if d != nil {
			id = d.ID
		}
		return Result{}, fmt.Errorf("%w: deliberation %s has not completed: there is no ranking to recompute", ErrConflict, id)
	}
	// A copy of the result alone: the rest of d is not needed.
	r := (&Deliberation{Result: d.Result}).Clone().Result
	if !slices.ContainsFunc(r.Ranking, func(x Ranked) bool { return len(x.Critiques) > 0 }) {
		// No review ran (a vote decided, or one agent): there is nothing
		// to aggregate, and the stored order stands.
		r.Aggregation = a
		return *r, nil
	}
	// Ties keep the task's agent order, as in the ranking at completion.
	order := make(map[string]int, len(d.Task.Agents))
	for i, ag := range d.Task.Agents {
		order[ag.ID] = i
	}
	slices.SortStableFunc(r.Ranking, func(x, y Ranked) int {
		return order[x.Proposal.AgentID] - order[y.Proposal.AgentID]
	})
	r.rank(a)
	if r.Protocol == ProtocolJudge && r.Final != nil {
		// The judge's answer wins whatever the scores (protocolResult).
		r.Winner = r.Final.AgentID
	}
	return *r, nil
}

// rank scores r.Ranking — the final proposals in the task's agent order,
// each with its critiques — with aggregation a, sorts it (stable: ties keep
// the order; unscored proposals go last), numbers the ranks, names the
// winner and measures the reviewers' agreement.
func (r *Result) rank(a Aggregation) {
	r.Aggregation = a
	var borda map[string]bordaScore
	if a == AggregationBorda {
		borda = bordaScores(r.Ranking)
	}
	for i := range r.Ranking {
		rk := &r.Ranking[i]
		rk.Score, rk.Scores, rk.Scored, rk.ScoreSpread = 0, map[string]float64{}, false, 0
		if len(rk.Critiques) == 0 {
			continue
		}
		rk.Scored = true
		lo, hi := rk.Critiques[0].Overall, rk.Critiques[0].Overall
		for _, c := range rk.Critiques {
			lo, hi = min(lo, c.Overall), max(hi, c.Overall)
		}
		rk.ScoreSpread = hi - lo
		weight := func(Critique) float64 { return 1 }
		if a == AggregationConfidence && totalConfidence(rk.Critiques) > 0 {
			weight = Critique.weight
		}
		var total float64
		for _, c := range rk.Critiques {
			total += weight(c)
		}
		for _, c := range rk.Critiques {
			w := weight(c) / total
			rk.Score += w * c.Overall
			for name, v := range c.Scores {
				rk.Scores[name] += w * v
			}
		}
		if a == AggregationBorda {
			b, ok := borda[rk.Proposal.AgentID]
			rk.Scored, rk.Score = ok, 0
			if ok {
				rk.Score = b.mean()
			}
		}
	}
	sort.SliceStable(r.Ranking, func(i, j int) bool {
		x, y := r.Ranking[i], r.Ranking[j]
		if x.Scored != y.Scored {
			return x.Scored
		}
		return x.Score > y.Score
	})
	r.Winner = ""
	for i := range r.Ranking {
		r.Ranking[i].Rank = i + 1
	}
	if len(r.Ranking) > 0 {
		r.Winner = r.Ranking[0].Proposal.AgentID
	}
	r.Agreement, r.Raters = KendallW(r.Ranking)
}

// weight is c's weight under AggregationConfidence: the confidence its
// reviewer stated, 1 when it stated none.
func (c Critique) weight() float64 {
	if c.Confidence == nil {
		return 1
	}
	return *c.Confidence
}

// totalConfidence sums the weights of cs; 0 (every reviewer stated no
// confidence at all) falls back to the plain mean.
func totalConfidence(cs []Critique) float64 {
	var t float64
	for _, c := range cs {
		t += c.weight()
	}
	return t
}

// bordaScore accumulates the normalized Borda points of one proposal.
type bordaScore struct {
	points float64
	n      int
}

func (b bordaScore) mean() float64 { return b.points / float64(b.n) }

// bordaScores returns, by author, the normalized Borda points the
// proposals of ranking got from the reviewers that ranked at least two of
// them.
func bordaScores(ranking []Ranked) map[string]bordaScore {
	out := map[string]bordaScore{}
	for _, rv := range reviewerRankings(ranking) {
		k := len(rv.authors)
		if k < 2 {
			continue
		}
		// Midrank 1 is the best; points k−1 … 0, scaled to [1, 0].
		for i, author := range rv.authors {
			b := out[author]
			b.points += (float64(k) - rv.ranks[i]) / float64(k-1)
			b.n++
			out[author] = b
		}
	}
	return out
}

// reviewerRanking is one reviewer's ranking of the proposals it reviewed:
// authors in ranking order and their midranks (1 = the highest overall
// score; tied scores share the mean of their places).
type reviewerRanking struct {
	reviewer string
	authors  []string
	ranks    []float64
}

// reviewerRankings returns every reviewer's ranking of the proposals of
// ranking, reviewers in the order they first appear.
func reviewerRankings(ranking []Ranked) []reviewerRanking {
	type scored struct {
		author  string
		overall float64
	}
	by := map[string][]scored{}
	var reviewers []string
	for _, rk := range ranking {
		for _, c := range rk.Critiques {
			if _, ok := by[c.ReviewerID]; !ok {
				reviewers = append(reviewers, c.ReviewerID)
			}
			by[c.ReviewerID] = append(by[c.ReviewerID], scored{rk.Proposal.AgentID, c.Overall})
		}
	}
	out := make([]reviewerRanking, 0, len(reviewers))
	for _, id := range reviewers {
		s := by[id]
		sort.SliceStable(s, func(i, j int) bool { return s[i].overall > s[j].overall })
		rv := reviewerRanking{reviewer: id, authors: make([]string, len(s)), ranks: make([]float64, len(s))}
		for i := 0; i < len(s); {
			j := i
			for j < len(s) && s[j].overall == s[i].overall {
				j++
			}
			// Places i+1 … j share their mean.
			mid := float64(i+1+j) / 2
			for ; i < j; i++ {
				rv.authors[i], rv.ranks[i] = s[i].author, mid
			}
		}
		out = append(out, rv)
	}
	return out
}

// validateAggregation checks constraints.aggregation and final_review: known
// values, and a review by all pairs of at most MaxAllPairsAgents agents.
func (t Task) validateAggregation(add func(string, ...any)) {
	c := t.Constraints
	if !c.Aggregation.Valid() {
		add("aggregation %q is unknown (want mean, borda or confidence)", c.Aggregation)
	}
	switch {
	case !c.FinalReview.Valid():
		add("final_review %q is unknown (want all or peers)", c.FinalReview)
	case c.FinalReview == FinalReviewAll && len(t.Agents) > MaxAllPairsAgents:
		add("final_review all with %d agents would ask %d critiques: at most %d agents review all pairs; use final_review peers",
			len(t.Agents), len(t.Agents)*(len(t.Agents)-1), MaxAllPairsAgents)
	}
}

// aggregation is the task's aggregation; a state stored before
// aggregations has none, which is the mean.
func (d *Deliberation) aggregation() Aggregation {
	if d.Task.Constraints.Aggregation == "" {
		return AggregationMean
	}
	return d.Task.Constraints.Aggregation
}

// roundCalls is how many calls one more revision round of alive asks for:
// its revisions and their critiques (all pairs when it is the final review).
func (d *Deliberation) roundCalls(alive []Agent) int {
	return len(alive) * (1 + d.reviewersPerProposal(d.Stage+1, len(alive)))
}
