package council

import (
	"math"
	"slices"
)

// KendallW measures how far the final review's reviewers agree on the
// order of the final proposals of ranking: Kendall's coefficient of
// concordance W in [0,1] (1: every reviewer ranks the proposals alike; 0:
// their rankings cancel out), over the complete rankings — a reviewer's
// ranking is complete when it scored every proposal of ranking but its
// own. It returns W and how many rankings it used; with fewer than 2
// (e.g. the ring, where each reviewer scores one proposal), fewer than 3
// proposals, no spread in any ranking (every reviewer tied everything) or
// rankings that do not form a balanced design, it returns 0, 0: there is
// no agreement to measure.
//
// A reviewer never scores its own proposal, so the rankings of a review by
// all pairs are a balanced incomplete block design (t proposals, b
// rankings of k = t−1 each, every pair of proposals ranked together by λ
// reviewers), and W is Kendall and Babington Smith's (1940) coefficient
// for such designs, W = 12 S / (λ² t (t²−1)), S the sum of the squared
// deviations of the proposals' rank sums from their mean r(k+1)/2; with
// complete rankings (λ = b, k = t) it is the usual 12 S / (m² (n³−n)).
// Ties take midranks and the tie correction replaces each ranking's
// (k³−k)/12 by the sum of its squared midrank deviations, which in the
// complete case is the usual 12 S / (m² (n³−n) − m Σ(t³−t)).
func KendallW(ranking []Ranked) (float64, int) {
	t := len(ranking)
	if t < 3 {
		return 0, 0
	}
	index := make(map[string]int, t)
	for i, rk := range ranking {
		index[rk.Proposal.AgentID] = i
	}
	var complete []reviewerRanking
	for _, rv := range reviewerRankings(ranking) {
		want := t
		if _, author := index[rv.reviewer]; author {
			want = t - 1
		}
		if len(rv.authors) == want && !slices.Contains(rv.authors, rv.reviewer) {
			complete = append(complete, rv)
		}
	}
	b := len(complete)
	if b < 2 {
		return 0, 0
	}
	k := len(complete[0].authors)
	seen := make([]int, t)     // r: rankings each proposal is in
	pairs := make([]int, t*t)  // λ: rankings each pair is in together
	sums := make([]float64, t) // rank sums
	var spread float64         // Σ of each ranking's squared midrank deviations
	for _, rv := range complete {
		if len(rv.authors) != k {
			return 0, 0
		}
		for i, a := range rv.authors {
			x := index[a]
			seen[x]++
			sums[x] += rv.ranks[i]
			d := rv.ranks[i] - float64(k+1)/2
			spread += d * d
			for _, o := range rv.authors[i+1:] {
				y := index[o]
				pairs[x*t+y]++
				pairs[y*t+x]++
			}
		}
	}
	r, lambda := seen[0], pairs[1]
	for x := range t {
		if seen[x] != r {
			return 0, 0
		}
		for y := range t {
			if x != y && pairs[x*t+y] != lambda {
				return 0, 0
			}
		}
	}
	if spread == 0 || lambda == 0 {
		return 0, 0
	}
	mean := float64(r) * float64(k+1) / 2
	var s float64
	for _, sum := range sums {
		s += (sum - mean) * (sum - mean)
	}
	// S at perfect concordance is λ² t (t²−1) / 12; without ties the
	// rankings' spread is b (k³−k) / 12, so c below turns spread into it.
	ft, fk, fb, fl := float64(t), float64(k), float64(b), float64(lambda)
	c := fl * fl * ft * (ft*ft - 1) / (fb * fk * (fk*fk - 1))
	w := s / (c * spread)
	return math.Min(math.Max(w, 0), 1), b
}
