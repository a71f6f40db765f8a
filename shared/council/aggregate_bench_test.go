package council_test

import (
	"fmt"
	"testing"

	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// rerankBench is a completed deliberation of the largest council reviewed
// by all pairs (MaxAllPairsAgents agents: 240 critiques in the final
// review), with scores that differ by reviewer and author.
func rerankBench(b *testing.B) *council.Deliberation {
	b.Helper()
	task := counciltest.Task()
	task.Agents = nil
	for i := range council.MaxAllPairsAgents {
		task.Agents = append(task.Agents, council.Agent{ID: fmt.Sprintf("agent-%02d", i), Role: "DEV"})
	}
	d, err := council.New("dlb-bench", task, t0)
	if err != nil {
		b.Fatal(err)
	}
	err = counciltest.FinishScoring(d, t0, func(w council.Work) float64 {
		return float64((len(w.AgentID)*7+int(w.AuthorID[len(w.AuthorID)-1])*3+int(w.AgentID[len(w.AgentID)-1]))%11) / 10
	})
	if err != nil || d.Status != council.StatusCompleted {
		b.Fatalf("%s: %v", d.Status, err)
	}
	return d
}

// BenchmarkRerank16Agents ranks a 16-agent deliberation again (council
// rerank, GET /deliberations/{id}/ranking) with each aggregation: scores,
// sort and Kendall's W over 16 rankings of 15.
func BenchmarkRerank16Agents(b *testing.B) {
	d := rerankBench(b)
	for _, a := range []council.Aggregation{council.AggregationMean, council.AggregationBorda, council.AggregationConfidence} {
		b.Run(string(a), func(b *testing.B) {
			for b.Loop() {
				if _, err := council.Rerank(d, a); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRerank16AgentsBaseline only copies the deliberation's result,
// as Rerank does before it ranks.
func BenchmarkRerank16AgentsBaseline(b *testing.B) {
	d := rerankBench(b)
	for b.Loop() {
		(&council.Deliberation{Result: d.Result}).Clone()
	}
}
