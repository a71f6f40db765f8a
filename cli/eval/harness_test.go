package eval_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"strings"
	"testing"

	"council.dev/cli/eval"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// scripted is a model that knows HumanEval's answers: each answer it
// writes is the problem's canonical solution with probability p, else a
// wrong one of its own (it raises, with a number no other answer has).
// The draw hangs on the call's sampling seed (one per deliberation, agent
// and stage) and seed, not on the order of the calls, so that a run is the
// same whatever the engine's concurrency. Critiques are the cooperative
// fake's: every answer gets the same score.
func scripted(ps []eval.Problem, p float64, seed uint64) *counciltest.Completer {
	return &counciltest.Completer{CompleteFunc: func(_ context.Context, req council.CompletionRequest) (council.Completion, error) {
		if req.Schema != nil {
			return counciltest.Answer(req), nil
		}
		prob, ok := problemOf(ps, req)
		if !ok {
			return council.Completion{}, council.Invalidf("scripted model: no HumanEval prompt in the request")
		}
		h := fnv.New64a()
		_ = binary.Write(h, binary.LittleEndian, seed)
		if req.Seed != nil {
			_ = binary.Write(h, binary.LittleEndian, *req.Seed)
		}
		h.Write([]byte(prob.TaskID))
		draw := h.Sum64()
		body := prob.CanonicalSolution
		if float64(draw>>11)/(1<<53) >= p {
			body = fmt.Sprintf("    raise RuntimeError('wrong answer %x')\n", draw)
		}
		text := "```python\n" + prob.Prompt + body + "```\n"
		return council.Completion{Content: text, Model: "scripted", FinishReason: "stop",
			Usage: council.Usage{PromptTokens: 100, CompletionTokens: 50, TotalTokens: 150}}, nil
	}}
}

// problemOf finds the problem whose prompt the request carries (the last
// one that does, as a prompt may contain a shorter one).
func problemOf(ps []eval.Problem, req council.CompletionRequest) (eval.Problem, bool) {
	var best eval.Problem
	found := false
	for _, m := range req.Messages {
		for _, p := range ps {
			if strings.Contains(m.Content, p.Prompt) && len(p.Prompt) > len(best.Prompt) {
				best, found = p, true
			}
		}
	}
	return best, found
}

// quality runs every problem under proto with a council of agents and the
// scripted model, over several seeds, and returns the share that passed.
func quality(t *testing.T, ps []eval.Problem, runner *eval.Runner, proto council.Protocol, agents int, p float64, seeds int) (passed, total int) {
	t.Helper()
	for s := range seeds {
		runner.LLM = scripted(ps, p, uint64(s))
		out, err := runner.Run(t.Context(), ps, eval.Config{
			Protocols: []council.Protocol{proto}, Agents: agents, Parallel: 8, RunID: fmt.Sprintf("s%d", s),
		})
		if err != nil {
			t.Fatalf("Run %s seed %d: %v", proto, s, err)
		}
		for _, o := range out {
			if o.Status != council.StatusCompleted {
				t.Fatalf("%s %s: %s (%s)", proto, o.TaskID, o.Status, o.Reason)
			}
			total++
			if o.Passed {
				passed++
			}
		}
	}
	return passed, total
}

// TestHarnessMatchesTheArithmetic drives the real engine and the real
// sandbox with a scripted model right with probability p = 0.6 and checks
// what the arithmetic predicts: a single answer passes with probability
// 0.6; the plurality of 5 independent answers, the wrong ones all distinct,
// is right whenever 2 or more of the 5 are, P = 1 − 0.4⁵ − 5·0.6·0.4⁴ ≈
// 0.913 (and in some of the ties, where the tie-break picks it). The
// bounds are 4.5 binomial standard deviations wide over 2 × 164 tasks, and
// the run is deterministic: the seeds fix every draw.
func TestHarnessMatchesTheArithmetic(t *testing.T) {
	ps := problems(t)
	const p, seeds = 0.6, 2
	runner := &eval.Runner{}
	binomial := func(q float64, n int) float64 { return 4.5 * math.Sqrt(q*(1-q)/float64(n)) }

	single, n := quality(t, ps, runner, council.ProtocolCritiqueRevise, 1, p, seeds)
	got := float64(single) / float64(n)
	if tol := binomial(p, n); math.Abs(got-p) > tol {
		t.Errorf("one agent: %d of %d passed (%.3f), want %.2f ± %.3f", single, n, got, p, tol)
	}

	vote, n := quality(t, ps, runner, council.ProtocolVote, 5, p, seeds)
	got5 := float64(vote) / float64(n)
	want := 1 - math.Pow(1-p, 5) - 5*p*math.Pow(1-p, 4)
	if tol := binomial(want, n); got5 < want-tol {
		t.Errorf("vote of 5: %d of %d passed (%.3f), want %.3f or more (− %.3f)", vote, n, got5, want, tol)
	}
	if got5 <= got {
		t.Errorf("vote of 5 (%.3f) does not beat one answer (%.3f)", got5, got)
	}
	t.Logf("p = %.1f: one answer %.3f, plurality of 5 %.3f (predicted ≥ %.3f), %d tasks each", p, got, got5, want, n)
}

// TestHarnessRowsCountTheCalls: the table's row of a protocol adds up the
// calls and tokens of its deliberations and the budget stops.
func TestHarnessRowsCountTheCalls(t *testing.T) {
	ps := problems(t)[:4]
	runner := &eval.Runner{LLM: scripted(problems(t), 1, 0)}
	out, err := runner.Run(t.Context(), ps, eval.Config{
		Protocols: []council.Protocol{council.ProtocolVote, council.ProtocolCritiqueRevise}, Agents: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	rows := eval.Summarize(out)
	if len(rows) != 2 || rows[0].Protocol != council.ProtocolVote || rows[1].Protocol != council.ProtocolCritiqueRevise {
		t.Fatalf("rows %+v, want vote then critique_revise", rows)
	}
	for _, r := range rows {
		if r.Tasks != 4 || r.Passed != 4 || r.Quality != 1 || r.Failed != 0 {
			t.Errorf("%s: %+v; want 4 tasks, all passed (the model is always right)", r.Protocol, r)
		}
		if r.Calls < 4*3 || r.CompletionTokens < 4*3*50 {
			t.Errorf("%s: %d calls, %d completion tokens; want 3 answers of 50 tokens per task at least", r.Protocol, r.Calls, r.CompletionTokens)
		}
	}
	if rows[1].Calls <= rows[0].Calls {
		t.Errorf("critique_revise made %d calls, vote %d: critiques and revisions should cost more", rows[1].Calls, rows[0].Calls)
	}
}

func TestFinalAnswer(t *testing.T) {
	ranking := []council.Ranked{
		{Proposal: council.Proposal{AgentID: "agent-1", Content: "one"}},
		{Proposal: council.Proposal{AgentID: "agent-2", Content: "two"}},
	}
	tests := []struct {
		name          string
		result        council.Result
		agent, answer string
		ok            bool
	}{
		{"winner", council.Result{Winner: "agent-2", Ranking: ranking}, "agent-2", "two", true},
		{"judge", council.Result{Winner: "agent-2", Ranking: ranking,
			Final: &council.Final{AgentID: "agent-1", Content: "synthesis"}}, "agent-1", "synthesis", true},
		{"none", council.Result{Winner: "agent-3", Ranking: ranking}, "", "", false},
	}
	for _, tt := range tests {
		agent, answer, ok := eval.FinalAnswer(&tt.result)
		if agent != tt.agent || answer != tt.answer || ok != tt.ok {
			t.Errorf("%s: got %q %q %v, want %q %q %v", tt.name, agent, answer, ok, tt.agent, tt.answer, tt.ok)
		}
	}
}
