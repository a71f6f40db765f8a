package council_test

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// Each benchmark here has a baseline next to it that does only the part of
// the work that is not the domain's, so the difference is what the domain
// adds.

// BenchmarkDeliberation3Agents1Round applies every result of a 3-agent,
// 1-round deliberation (6 proposals, 9 critiques: the final review by all
// pairs) to a new aggregate, from
// New to completed and ranked, as execute does over a whole run, without
// the store and the codec.
func BenchmarkDeliberation3Agents1Round(b *testing.B) {
	task := counciltest.Task()
	for b.Loop() {
		d, err := council.New("dlb-bench", task, t0)
		if err != nil {
			b.Fatal(err)
		}
		if err := counciltest.Finish(d, t0); err != nil {
			b.Fatal(err)
		}
		if d.Status != council.StatusCompleted {
			b.Fatalf("status %s: %s", d.Status, d.Reason)
		}
	}
}

// BenchmarkDeliberation3Agents1RoundBaseline only builds the 15 results
// BenchmarkDeliberation3Agents1Round applies.
func BenchmarkDeliberation3Agents1RoundBaseline(b *testing.B) {
	d, err := council.New("dlb-bench", counciltest.Task(), t0)
	if err != nil {
		b.Fatal(err)
	}
	if err := counciltest.Finish(d, t0); err != nil {
		b.Fatal(err)
	}
	var work []council.Work
	for _, k := range slices.Sorted(maps.Keys(d.Work)) {
		work = append(work, *d.Work[k])
	}
	rubric := d.Task.Constraints.Rubric
	for b.Loop() {
		for _, w := range work {
			if w.Kind == council.WorkProposal {
				counciltest.ProposalFor(w)
			} else {
				counciltest.CritiqueFor(w, rubric)
			}
		}
	}
}

// benchCritique is a critique as a model writes it: pretty-printed, scores
// on the 0..10 scale.
const benchCritique = `
{
  "scores": {"correctness": 8, "completeness": 6.5, "clarity": 7, "feasibility": 9},
  "overall": 7.5,
  "strengths": [
    "Compare-and-set on the bucket keeps replicas consistent without a lock service.",
    "The refill is computed lazily, so idle keys cost nothing."
  ],
  "issues": [
    "Nothing says what happens when the store is unreachable: fail open or closed?",
    "Clock skew between replicas is not discussed."
  ],
  "suggestions": [
    "Fail open for reads, closed for writes, and say so in the runbook.",
    "Take the time from the store's revision timestamps instead of the replica's clock."
  ]
}
`

// BenchmarkParseCritique parses and checks one critique against the
// default rubric.
func BenchmarkParseCritique(b *testing.B) {
	rubric := council.DefaultRubric()
	for b.Loop() {
		if _, err := council.ParseCritique(benchCritique, rubric); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseCritiqueBaseline decodes the same text with a plain
// json.Unmarshal into a map, checking nothing.
func BenchmarkParseCritiqueBaseline(b *testing.B) {
	data := []byte(strings.TrimSpace(benchCritique))
	for b.Loop() {
		var v map[string]any
		if err := json.Unmarshal(data, &v); err != nil {
			b.Fatal(err)
		}
	}
}
