package council_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// protocolTask is counciltest.Task with a fourth agent, so that a debate
// shows each agent three answers, and the protocol settings of mut.
func protocolTask(mut func(*council.Constraints)) council.Task {
	task := counciltest.Task()
	task.Agents = append(task.Agents, council.Agent{ID: "agent-data-001", Role: "DATA"})
	task.Constraints.Peers = 1
	mut(&task.Constraints)
	return task
}

// call is one piece of work as a test counts it.
type call struct {
	Kind  council.WorkKind
	Stage int
	Judge bool
}

// played is what play saw: the calls, and the user message of each.
type played struct {
	calls []call
	users map[string]string // work key → user message
	reqs  map[string]council.ProposalRequest
}

func (p played) count(kind council.WorkKind, stage int, judge bool) int {
	n := 0
	for _, c := range p.calls {
		if c == (call{kind, stage, judge}) {
			n++
		}
	}
	return n
}

// play answers every piece of work until d ends: a proposal's content is
// answer(work), a critique's overall score is score(work). It builds the
// messages of every request as generate and critique would.
func play(t *testing.T, d *council.Deliberation, answer func(w council.Work) string, score func(w council.Work) float64) played {
	t.Helper()
	out := played{users: map[string]string{}, reqs: map[string]council.ProposalRequest{}}
	for range 50 {
		if d.Status.Terminal() {
			return out
		}
		keys := send(d)
		if len(keys) == 0 {
			t.Fatalf("outbox empty while %s in stage %d %s", d.Status, d.Stage, d.Phase)
		}
		for _, k := range keys {
			w := *d.Work[k]
			out.calls = append(out.calls, call{w.Kind, w.Stage, council.IsJudgeKey(k)})
			if w.Kind == council.WorkProposal {
				r, err := d.ProposalRequest(k)
				if err != nil {
					t.Fatal(err)
				}
				out.reqs[k] = r
				out.users[k] = council.ProposalMessages(r)[1].Content
				recordProposal(t, d, k, council.Proposal{AgentID: w.AgentID, Content: answer(w), Model: "m", Usage: usageP}, at(1))
				continue
			}
			r, err := d.CritiqueRequest(k)
			if err != nil {
				t.Fatal(err)
			}
			out.users[k] = council.CritiqueMessages(r)[1].Content
			c := crit(w.AgentID, score(w))
			c.Issues = []string{"an issue"} // crit's names its reviewer
			recordCritique(t, d, k, c, at(1))
		}
	}
	t.Fatal("deliberation did not end")
	return out
}

// answers returns the answer func giving agent i (task order) the i-th
// answer: "Answer: <x>" lines under an explanation that names no agent.
func answers(task council.Task, xs ...string) func(council.Work) string {
	return func(w council.Work) string {
		for i, a := range task.Agents {
			if a.ID == w.AgentID {
				return fmt.Sprintf("Reasoning at stage %d.\nAnswer: %s", w.Stage, xs[i%len(xs)])
			}
		}
		return "?"
	}
}

// flat scores every critique 0.5.
func flat(council.Work) float64 { return 0.5 }

func TestVoteWinsByPlurality(t *testing.T) {
	task := protocolTask(func(c *council.Constraints) { c.Protocol = council.ProtocolVote })
	d := newDeliberation(t, task)
	p := play(t, d, answers(task, "41", "42", "42 ", "7"), flat)
	if d.Status != council.StatusCompleted {
		t.Fatalf("status %s (%s), want completed", d.Status, d.Reason)
	}
	if n := len(p.calls); n != 4 || p.count(council.WorkProposal, 0, false) != 4 {
		t.Errorf("calls %v, want the 4 answers only", p.calls)
	}
	r := d.Result
	want := []council.Vote{{Answer: "42", Count: 2, Agents: []string{qa, devops}}, {Answer: "41", Count: 1, Agents: []string{archi}},
		{Answer: "7", Count: 1, Agents: []string{"agent-data-001"}}}
	if diff := cmp.Diff(want, r.Votes); diff != "" {
		t.Errorf("votes (-want +got):\n%s", diff)
	}
	if r.Winner != qa || r.Protocol != council.ProtocolVote || r.RoundsRun != 0 || r.Final != nil {
		t.Errorf("winner %s protocol %s rounds_run %d final %v; want %s, vote, 0, none", r.Winner, r.Protocol, r.RoundsRun, r.Final, qa)
	}
	if got := []string{r.Ranking[0].Proposal.AgentID, r.Ranking[1].Proposal.AgentID}; !slices.Equal(got, []string{qa, devops}) {
		t.Errorf("ranking starts %v, want the plurality's agents %s, %s", got, qa, devops)
	}
	for k, u := range p.users {
		if !strings.Contains(u, `end with a line "Answer: <the answer>"`) {
			t.Errorf("%s: the answer prompt does not ask for an extractable answer:\n%s", k, u)
		}
	}
}

func TestVoteWithoutPluralityFallsBackToReview(t *testing.T) {
	task := protocolTask(func(c *council.Constraints) { c.Protocol = council.ProtocolVote })
	d := newDeliberation(t, task)
	score := func(w council.Work) float64 {
		if w.AuthorID == devops {
			return 0.9
		}
		return 0.3
	}
	p := play(t, d, answers(task, "1", "2", "3", "4"), score)
	if d.Status != council.StatusCompleted {
		t.Fatalf("status %s (%s), want completed", d.Status, d.Reason)
	}
	if p.count(council.WorkProposal, 0, false) != 4 || p.count(council.WorkCritique, 0, false) == 0 || p.count(council.WorkProposal, 1, false) != 0 {
		t.Errorf("calls %v, want 4 answers, then critiques of stage 0, no revision", p.calls)
	}
	r := d.Result
	if r.Winner != devops || !r.Ranking[0].Scored || len(r.Votes) != 4 {
		t.Errorf("winner %s scored %v votes %v; want %s by the review, 4 votes of 1", r.Winner, r.Ranking[0].Scored, r.Votes, devops)
	}
}

func TestDebate(t *testing.T) {
	task := protocolTask(func(c *council.Constraints) { c.Protocol, c.Rounds = council.ProtocolDebate, 2 })
	d := newDeliberation(t, task)
	p := play(t, d, answers(task, "yes", "YES", "no", "Yes"), flat)
	if d.Status != council.StatusCompleted {
		t.Fatalf("status %s (%s), want completed", d.Status, d.Reason)
	}
	for stage := range 3 {
		if n := p.count(council.WorkProposal, stage, false); n != 4 {
			t.Errorf("stage %d: %d answers, want 4", stage, n)
		}
	}
	if len(p.calls) != 12 {
		t.Errorf("calls %v, want 12 answers and no critique (the vote decides)", p.calls)
	}
	r := d.Result
	if r.RoundsRun != 2 || r.Winner != archi || len(r.Votes) != 2 || r.Votes[0].Answer != "yes" || r.Votes[0].Count != 3 {
		t.Errorf("rounds_run %d winner %s votes %+v; want 2, %s, yes×3", r.RoundsRun, r.Winner, r.Votes, archi)
	}
	for k, rq := range p.reqs {
		switch {
		case rq.Stage == 0 && rq.Mode != council.ModeAnswer:
			t.Errorf("%s: mode %q, want answer", k, rq.Mode)
		case rq.Stage > 0 && (rq.Mode != council.ModeDebate || len(rq.Candidates) != 3 || rq.Previous == nil || len(rq.Critiques) != 0):
			t.Errorf("%s: mode %q, %d candidates, previous %v, %d critiques; want debate, 3, own, none", k, rq.Mode, len(rq.Candidates), rq.Previous != nil, len(rq.Critiques))
		}
	}
}

func TestDebateWithoutAgreementIsReviewed(t *testing.T) {
	task := protocolTask(func(c *council.Constraints) { c.Protocol, c.Rounds = council.ProtocolDebate, 1 })
	d := newDeliberation(t, task)
	p := play(t, d, answers(task, "a", "b", "c", "d"), flat)
	if d.Status != council.StatusCompleted {
		t.Fatalf("status %s (%s), want completed", d.Status, d.Reason)
	}
	if p.count(council.WorkCritique, 0, false) != 0 || p.count(council.WorkCritique, 1, false) == 0 {
		t.Errorf("calls %v: want critiques of the final stage only", p.calls)
	}
	if !d.Result.Ranking[0].Scored || d.Result.RoundsRun != 1 {
		t.Errorf("ranking %+v rounds_run %d: want scored by the final review, 1 round", ranks(d.Result), d.Result.RoundsRun)
	}
}

func TestDebateStopsWhenStable(t *testing.T) {
	task := protocolTask(func(c *council.Constraints) {
		c.Protocol, c.Rounds, c.StopWhenStable = council.ProtocolDebate, 4, true
	})
	d := newDeliberation(t, task)
	p := play(t, d, answers(task, "x", "x", "y", "z"), flat)
	if d.Status != council.StatusCompleted {
		t.Fatalf("status %s (%s), want completed", d.Status, d.Reason)
	}
	// Stage 0 and 1 vote x: the debate ends after round 1.
	if d.Result.RoundsRun != 1 || len(p.calls) != 8 {
		t.Errorf("rounds_run %d after calls %v; want 1 round, 8 answers", d.Result.RoundsRun, p.calls)
	}
}

func TestCritiqueReviseStopsWhenStable(t *testing.T) {
	task := protocolTask(func(c *council.Constraints) { c.Rounds, c.StopWhenStable = 4, true })
	d := newDeliberation(t, task)
	byAuthor := func(w council.Work) float64 { return map[string]float64{archi: 0.2, qa: 0.9, devops: 0.5}[w.AuthorID] }
	p := play(t, d, answers(task, "x"), byAuthor)
	if d.Status != council.StatusCompleted {
		t.Fatalf("status %s (%s), want completed", d.Status, d.Reason)
	}
	if d.Result.RoundsRun != 1 || p.count(council.WorkProposal, 2, false) != 0 {
		t.Errorf("rounds_run %d, calls %v: want the rounds to end after round 1 (same ranking as stage 0)", d.Result.RoundsRun, p.calls)
	}
	if d.Result.Winner != qa {
		t.Errorf("winner %s, want %s", d.Result.Winner, qa)
	}
}

func TestCritiqueReviseWithoutStopRunsEveryRound(t *testing.T) {
	task := protocolTask(func(c *council.Constraints) { c.Rounds = 3 })
	d := newDeliberation(t, task)
	play(t, d, answers(task, "x"), flat)
	if d.Result.RoundsRun != 3 || d.Result.Protocol != council.ProtocolCritiqueRevise {
		t.Errorf("rounds_run %d protocol %q; want 3, critique_revise", d.Result.RoundsRun, d.Result.Protocol)
	}
}

func TestJudge(t *testing.T) {
	task := protocolTask(func(c *council.Constraints) { c.Protocol, c.Judge = council.ProtocolJudge, qa })
	d := newDeliberation(t, task)
	answer := func(w council.Work) string {
		if council.IsJudgeKey(w.Key) {
			return "Picked: answer c\nthe final text"
		}
		return answers(task, "1", "2", "3", "4")(w)
	}
	p := play(t, d, answer, flat)
	if d.Status != council.StatusCompleted {
		t.Fatalf("status %s (%s), want completed", d.Status, d.Reason)
	}
	if p.count(council.WorkProposal, 0, false) != 4 || p.count(council.WorkProposal, 0, true) != 1 || len(p.calls) != 5 {
		t.Errorf("calls %v, want 4 answers and the judge's", p.calls)
	}
	r := d.Result
	want := &council.Final{AgentID: qa, Content: "Picked: answer c\nthe final text", Picked: "Answer C", Usage: usageP}
	if diff := cmp.Diff(want, r.Final); diff != "" {
		t.Errorf("final (-want +got):\n%s", diff)
	}
	if r.Winner != qa || len(r.Ranking) != 4 || r.Ranking[0].Scored || r.Usage.TotalTokens != 5*usageP.TotalTokens {
		t.Errorf("winner %s, ranking %+v, usage %+v; want the judge, 4 unscored candidates, 5 calls' usage", r.Winner, ranks(r), r.Usage)
	}
	rq := p.reqs[council.JudgeKey(0, qa)]
	if rq.Mode != council.ModeSynthesize || len(rq.Candidates) != 4 {
		t.Errorf("judge request mode %q with %d candidates, want synthesize with 4", rq.Mode, len(rq.Candidates))
	}
}

func TestSynthesizeAfterCritiqueRevise(t *testing.T) {
	task := protocolTask(func(c *council.Constraints) { c.Synthesize, c.Judge = true, devops })
	d := newDeliberation(t, task)
	p := play(t, d, answers(task, "x"), flat)
	if d.Status != council.StatusCompleted {
		t.Fatalf("status %s (%s), want completed", d.Status, d.Reason)
	}
	if p.count(council.WorkProposal, 1, true) != 1 || p.calls[len(p.calls)-1] != (call{council.WorkProposal, 1, true}) {
		t.Errorf("calls %v, want the judge's last, on stage 1", p.calls)
	}
	if f := d.Result.Final; f == nil || f.AgentID != devops || d.Result.Winner == devops && !d.Result.Ranking[0].Scored {
		t.Errorf("final %+v winner %s; want the judge's answer and the ranking's winner", f, d.Result.Winner)
	}
}

func TestDebateBudgetStopsTheRounds(t *testing.T) {
	task := protocolTask(func(c *council.Constraints) { c.Protocol, c.Rounds, c.MaxCalls = council.ProtocolDebate, 2, 7 })
	d := newDeliberation(t, task)
	play(t, d, answers(task, "x", "x", "y", "z"), flat)
	if d.Status != council.StatusCompleted || d.Result.Stopped != council.ReasonBudgetExceeded || d.Calls != 4 || d.Result.RoundsRun != 0 {
		t.Errorf("%s stopped %q calls %d rounds_run %d; want completed, budget_exceeded after the 4 first answers", d.Status, d.Result.Stopped, d.Calls, d.Result.RoundsRun)
	}
}

// TestPromptsAreAnonymous checks, for every protocol, that no prompt names
// the author of an answer it shows (id or role), and that the answers a
// debate or a judge reads come in an order of its own.
func TestPromptsAreAnonymous(t *testing.T) {
	for _, proto := range []council.Protocol{council.ProtocolCritiqueRevise, council.ProtocolDebate, council.ProtocolVote, council.ProtocolJudge} {
		t.Run(string(proto), func(t *testing.T) {
			task := protocolTask(func(c *council.Constraints) {
				c.Protocol, c.Rounds, c.Synthesize, c.Judge = proto, 2, true, qa
			})
			d := newDeliberation(t, task)
			p := play(t, d, answers(task, "1", "2", "3", "4"), flat)
			if d.Status != council.StatusCompleted {
				t.Fatalf("status %s (%s)", d.Status, d.Reason)
			}
			orders := map[int]map[string]bool{} // stage → orders of the candidates' contents
			for k, u := range p.users {
				w := d.Work[k]
				for _, a := range task.Agents {
					if a.ID == w.AgentID {
						continue // the reader's own id and role head its prompt
					}
					if strings.Contains(u, a.ID) || strings.Contains(u, a.Role) {
						t.Errorf("%s: the prompt of %s names %s (%s):\n%s", k, w.AgentID, a.ID, a.Role, u)
					}
				}
				if rq, ok := p.reqs[k]; ok && len(rq.Candidates) >= 3 {
					var order []string
					for _, c := range rq.Candidates {
						order = append(order, c.Content[strings.LastIndex(c.Content, ":"):])
					}
					if orders[w.Stage] == nil {
						orders[w.Stage] = map[string]bool{}
					}
					orders[w.Stage][strings.Join(order, "|")] = true
				}
			}
			for stage, o := range orders {
				if proto == council.ProtocolDebate && stage > 0 && len(o) < 2 {
					t.Errorf("stage %d: every reader saw the answers in the same order", stage)
				}
			}
			if proto == council.ProtocolDebate && len(orders) == 0 {
				t.Error("no debate prompt showed 3 answers")
			}
		})
	}
}

// TestJudgeOrderDiffersFromTheAnswerOrder checks that the judge does not
// see the answers in task order for every deliberation: across several
// deliberation ids, the shuffle gives more than one order.
func TestJudgeOrderIsShuffled(t *testing.T) {
	task := protocolTask(func(c *council.Constraints) { c.Protocol, c.Judge = council.ProtocolJudge, qa })
	seen := map[string]bool{}
	for i := range 8 {
		d, err := council.New(fmt.Sprintf("dlb-shuffle-%d", i), task, t0)
		if err != nil {
			t.Fatal(err)
		}
		p := play(t, d, answers(task, "1", "2", "3", "4"), flat)
		var order []string
		for _, c := range p.reqs[council.JudgeKey(0, qa)].Candidates {
			order = append(order, c.Content[len(c.Content)-1:])
		}
		seen[strings.Join(order, "")] = true
	}
	if len(seen) < 2 {
		t.Errorf("8 deliberations showed the judge the answers in %d order(s), want them shuffled", len(seen))
	}
}

func TestProtocolValidation(t *testing.T) {
	tests := []struct {
		name string
		mut  func(*council.Task)
		want string
	}{
		{"unknown protocol", func(t *council.Task) { t.Constraints.Protocol = "chaos" }, `protocol "chaos" is unknown`},
		{"judge without judge", func(t *council.Task) { t.Constraints.Protocol = council.ProtocolJudge }, "judge is required for protocol judge"},
		{"synthesize without judge", func(t *council.Task) { t.Constraints.Synthesize = true }, "judge is required for synthesize"},
		{"judge not an agent", func(t *council.Task) {
			t.Constraints.Protocol, t.Constraints.Judge = council.ProtocolJudge, "agent-nobody"
		}, `judge "agent-nobody" is not one of the agents`},
		{"vote with one agent", func(t *council.Task) {
			t.Constraints.Protocol, t.Agents, t.Constraints.Peers = council.ProtocolVote, t.Agents[:1], 1
		}, "protocol vote needs at least 2 agents, got 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			task := counciltest.Task()
			tt.mut(&task)
			_, err := council.New("dlb-x", task, t0)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	for _, proto := range []council.Protocol{council.ProtocolCritiqueRevise, council.ProtocolDebate, council.ProtocolVote, council.ProtocolJudge} {
		task := counciltest.Task()
		task.Constraints.Protocol, task.Constraints.Judge, task.Constraints.StopWhenStable = proto, qa, true
		if _, err := council.New("dlb-x", task, t0); err != nil {
			t.Errorf("protocol %s: New() = %v, want nil", proto, err)
		}
	}
}

func TestExtractAnswer(t *testing.T) {
	tests := []struct{ in, want string }{
		{"work\nAnswer: 42", "42"},
		{"Final Answer:   The  Cat\nthanks", "the cat"},
		{"answer: a\nsome more\nANSWER: B", "b"},
		{"text\n```go\nfunc F() {\n\treturn  1\n}\n```\nmore\n```python\nX = 1\n```", "X = 1"},
		{"  Plain   Text\n", "plain text"},
	}
	for _, tt := range tests {
		if got := council.ExtractAnswer(tt.in); got != tt.want {
			t.Errorf("ExtractAnswer(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestEngineRunsEveryProtocol(t *testing.T) {
	for _, proto := range []council.Protocol{council.ProtocolDebate, council.ProtocolVote, council.ProtocolJudge} {
		t.Run(string(proto), func(t *testing.T) {
			task := protocolTask(func(c *council.Constraints) { c.Protocol, c.Judge, c.Rounds = proto, qa, 1 })
			llm := &counciltest.Completer{}
			d := engineDeliberation(t, task)
			if err := (&council.Engine{LLM: llm}).Run(ctx, d); err != nil {
				t.Fatal(err)
			}
			if d.Status != council.StatusCompleted || d.Result.Protocol != proto {
				t.Fatalf("status %s (%s) protocol %q, want completed %s", d.Status, d.Reason, d.Result.Protocol, proto)
			}
			want := map[council.Protocol]int{council.ProtocolDebate: 8, council.ProtocolVote: 4, council.ProtocolJudge: 5}[proto]
			if n := len(llm.Requests()); n != want {
				t.Errorf("%d LLM calls, want %d", n, want)
			}
		})
	}
}

func TestDebateFeedbackRoundCarriesTheFeedback(t *testing.T) {
	task := protocolTask(func(c *council.Constraints) {
		c.Protocol, c.Rounds, c.Review = council.ProtocolDebate, 1, council.ReviewBeforeFinal
	})
	d := newDeliberation(t, task)
	run(t, d, at(1))
	if !d.AwaitingReview() {
		t.Fatalf("status %s phase %s, want waiting at the gate", d.Status, d.Phase)
	}
	if _, err := d.Decide(council.ReviewDecision{Decision: council.DecisionFeedback, Feedback: "Mind the failover."}, at(2)); err != nil {
		t.Fatal(err)
	}
	for _, k := range d.Outbox {
		r, err := d.ProposalRequest(k)
		if err != nil {
			t.Fatal(err)
		}
		if u := council.ProposalMessages(r)[1].Content; r.Mode != council.ModeDebate || !strings.Contains(u, "Mind the failover.") {
			t.Errorf("%s: mode %q, prompt without the feedback:\n%s", k, r.Mode, u)
		}
	}
}
