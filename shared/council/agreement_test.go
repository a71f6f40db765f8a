package council_test

import (
	"math"
	"testing"

	"council.dev/shared/council"
)

// reviews is a final review: reviewer → author → overall score.
type reviews map[string]map[string]float64

// ranking builds the final proposals of authors (in that order) with the
// critiques of rv.
func ranking(authors []string, rv reviews) []council.Ranked {
	out := make([]council.Ranked, len(authors))
	for i, a := range authors {
		out[i].Proposal = council.Proposal{AgentID: a}
		for _, reviewer := range []string{"A", "B", "C", "D", "E", "J1", "J2", "J3"} {
			if v, ok := rv[reviewer][a]; ok {
				out[i].Critiques = append(out[i].Critiques, council.Critique{ReviewerID: reviewer, AuthorID: a, Overall: v})
			}
		}
	}
	return out
}

// byRank turns ranks (1 = best) into scores a reviewer gives: a lower rank
// is a higher score.
func byRank(ranks map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for a, r := range ranks {
		out[a] = 1 - r/10
	}
	return out
}

func TestKendallW(t *testing.T) {
	objects := []string{"A", "B", "C", "D"}
	tests := []struct {
		name    string
		authors []string
		rv      reviews
		want    float64
		raters  int
	}{
		{
			// Complete rankings by three judges who wrote none of the four
			// answers: rank sums 4, 6, 8, 12 around 7.5, S = 35,
			// W = 12·35 / (3²·(4³−4)) = 7/9.
			name: "textbook: three judges rank four answers", authors: objects,
			rv: reviews{
				"J1": byRank(map[string]float64{"A": 1, "B": 2, "C": 3, "D": 4}),
				"J2": byRank(map[string]float64{"A": 1, "B": 3, "C": 2, "D": 4}),
				"J3": byRank(map[string]float64{"A": 2, "B": 1, "C": 3, "D": 4}),
			},
			want: 7.0 / 9, raters: 3,
		},
		{
			// J3 ties A and B (midranks 1.5): rank sums 3.5, 6.5, 8, 12,
			// S = 37.5, Σ(t³−t) = 6: W = 12·37.5 / (9·60 − 3·6) = 450/522.
			name: "textbook with a tie, tie-corrected", authors: objects,
			rv: reviews{
				"J1": byRank(map[string]float64{"A": 1, "B": 2, "C": 3, "D": 4}),
				"J2": byRank(map[string]float64{"A": 1, "B": 3, "C": 2, "D": 4}),
				"J3": byRank(map[string]float64{"A": 1, "B": 1, "C": 3, "D": 4}),
			},
			want: 450.0 / 522, raters: 3,
		},
		{
			name: "identical complete rankings", authors: objects,
			rv: reviews{
				"J1": byRank(map[string]float64{"A": 2, "B": 1, "C": 4, "D": 3}),
				"J2": byRank(map[string]float64{"A": 2, "B": 1, "C": 4, "D": 3}),
			},
			want: 1, raters: 2,
		},
		{
			name: "identical rankings with the same tie", authors: objects,
			rv: reviews{
				"J1": byRank(map[string]float64{"A": 1, "B": 1, "C": 3, "D": 4}),
				"J2": byRank(map[string]float64{"A": 1, "B": 1, "C": 3, "D": 4}),
			},
			want: 1, raters: 2,
		},
		{
			name: "two reversed rankings cancel out", authors: objects,
			rv: reviews{
				"J1": byRank(map[string]float64{"A": 1, "B": 2, "C": 3, "D": 4}),
				"J2": byRank(map[string]float64{"A": 4, "B": 3, "C": 2, "D": 1}),
			},
			want: 0, raters: 2,
		},
		{
			// All pairs, no self-review: each of A–D ranks the other three
			// alike (A > B > C > D): a balanced incomplete design, W = 1.
			name: "all pairs, concordant", authors: objects,
			rv: reviews{
				"A": byRank(map[string]float64{"B": 1, "C": 2, "D": 3}),
				"B": byRank(map[string]float64{"A": 1, "C": 2, "D": 3}),
				"C": byRank(map[string]float64{"A": 1, "B": 2, "D": 3}),
				"D": byRank(map[string]float64{"A": 1, "B": 2, "C": 3}),
			},
			want: 1, raters: 4,
		},
		{
			// D reverses the others: rank sums A 5, B 5, C 5, D 9 around
			// r(k+1)/2 = 6, S = 12; t = 4, λ = 2:
			// W = 12·12 / (2²·4·(4²−1)) = 144/240 = 0.6.
			name: "all pairs, one reviewer reverses the order", authors: objects,
			rv: reviews{
				"A": byRank(map[string]float64{"B": 1, "C": 2, "D": 3}),
				"B": byRank(map[string]float64{"A": 1, "C": 2, "D": 3}),
				"C": byRank(map[string]float64{"A": 1, "B": 2, "D": 3}),
				"D": byRank(map[string]float64{"C": 1, "B": 2, "A": 3}),
			},
			want: 0.6, raters: 4,
		},
		{
			// Each of three prefers the next answer in a cycle: every rank
			// sum is 3, S = 0.
			name: "all pairs of three, a cycle", authors: []string{"A", "B", "C"},
			rv: reviews{
				"A": {"B": 0.9, "C": 0.1},
				"B": {"C": 0.9, "A": 0.1},
				"C": {"A": 0.9, "B": 0.1},
			},
			want: 0, raters: 3,
		},
		{
			name: "the ring: one score per reviewer, nothing to measure", authors: []string{"A", "B", "C"},
			rv: reviews{"A": {"B": 0.9}, "B": {"C": 0.5}, "C": {"A": 0.1}},
		},
		{
			name: "one complete ranking", authors: objects,
			rv: reviews{
				"J1": byRank(map[string]float64{"A": 1, "B": 2, "C": 3, "D": 4}),
				"J2": byRank(map[string]float64{"A": 1, "B": 2}),
			},
		},
		{
			name: "two answers", authors: []string{"A", "B"},
			rv: reviews{"A": {"B": 0.9}, "B": {"A": 0.1}},
		},
		{
			name: "every reviewer ties everything", authors: []string{"A", "B", "C"},
			rv: reviews{"A": {"B": 0.5, "C": 0.5}, "B": {"A": 0.5, "C": 0.5}, "C": {"A": 0.5, "B": 0.5}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, n := council.KendallW(ranking(tt.authors, tt.rv))
			if math.Abs(w-tt.want) > 1e-12 || n != tt.raters {
				t.Errorf("KendallW = %v over %d rankings, want %v over %d", w, n, tt.want, tt.raters)
			}
		})
	}
}
