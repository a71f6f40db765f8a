package council

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Protocol says how the agents of a deliberation work together
// (constraints.protocol).
type Protocol string

// Protocols.
const (
	// ProtocolCritiqueRevise (the default): proposals, peer critiques and
	// revisions for constraints.rounds rounds, then ranking by the
	// critiques of the last stage.
	ProtocolCritiqueRevise Protocol = "critique_revise"
	// ProtocolDebate (Du et al. 2023, multi-agent debate): independent
	// answers, then constraints.rounds rounds in which every agent reads
	// the others' latest answers, anonymized, and writes an updated one;
	// the final answers are decided by vote when they agree, by a final
	// review otherwise.
	ProtocolDebate Protocol = "debate"
	// ProtocolVote (self-consistency): independent answers, one stage; the
	// plurality of the extracted answers wins, a final review otherwise.
	ProtocolVote Protocol = "vote"
	// ProtocolJudge (mixture of agents, LLM council chairman): independent
	// answers, then constraints.judge synthesizes the final answer from
	// all of them, anonymized.
	ProtocolJudge Protocol = "judge"
)

// Valid reports whether p is a known protocol ("" is the default).
func (p Protocol) Valid() bool {
	switch p {
	case "", ProtocolCritiqueRevise, ProtocolDebate, ProtocolVote, ProtocolJudge:
		return true
	}
	return false
}

// protocol is the task's protocol; a state stored before protocols has
// none, which is critique_revise.
func (d *Deliberation) protocol() Protocol {
	if d.Task.Constraints.Protocol == "" {
		return ProtocolCritiqueRevise
	}
	return d.Task.Constraints.Protocol
}

// ProposalMode says which prompt a proposal request asks for.
type ProposalMode string

// Proposal modes. The zero mode is a proposal of critique_revise (a first
// proposal, or the revision of Previous from its critiques).
const (
	// ModeAnswer is a first answer that ends with an extractable final
	// answer (protocols vote and debate, stage 0).
	ModeAnswer ProposalMode = "answer"
	// ModeDebate is the update of Previous after reading Candidates, the
	// other agents' latest answers (protocol debate, stage ≥ 1).
	ModeDebate ProposalMode = "debate"
	// ModeSynthesize is the judge's final answer from Candidates, every
	// agent's answer (protocol judge, or constraints.synthesize).
	ModeSynthesize ProposalMode = "synthesize"
)

// Valid reports whether m is a known mode ("" included).
func (m ProposalMode) Valid() bool {
	return m == "" || m == ModeAnswer || m == ModeDebate || m == ModeSynthesize
}

// Candidate is another agent's answer as a prompt shows it: under a label
// ("Answer A"), never with its author's id or role, so that a reviewer
// judges the text and not who wrote it.
type Candidate struct {
	Label   string
	Content string
}

// candidateLabel is the label of the i-th answer shown: Answer A … Z, AA …
func candidateLabel(i int) string {
	s := ""
	for i++; i > 0; i = (i - 1) / 26 {
		s = string(rune('A'+(i-1)%26)) + s
	}
	return "Answer " + s
}

// anonymize returns the proposals as candidates in an order shuffled for
// reader at stage: deterministic (the same for a retried or redelivered
// call: the seed is the deliberation id, the reader and the stage) and
// different per reader, so that no answer gains from its position, the
// same for every reader.
func anonymize(deliberation, reader string, stage int, ps []Proposal) []Candidate {
	order := make([]int, len(ps))
	for i := range order {
		order[i] = i
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%s/%d", deliberation, reader, stage)
	rand.New(rand.NewPCG(h.Sum64(), 0x636f756e63696c)).Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	out := make([]Candidate, len(ps))
	for i, k := range order {
		out[i] = Candidate{Label: candidateLabel(i), Content: ps[k].Content}
	}
	return out
}

// answersAt returns the proposals of stage by the surviving agents, in
// task order, leaving out skip's.
func (d *Deliberation) answersAt(stage int, skip string) []Proposal {
	var out []Proposal
	for _, a := range d.survivors(stage) {
		if a.ID != skip {
			out = append(out, d.Proposals[ProposalKey(stage, a.ID)])
		}
	}
	return out
}

// protocolRequest completes r, the request of proposal work w, with what
// the protocol asks of it: the mode and the anonymized answers it reads.
func (d *Deliberation) protocolRequest(r *ProposalRequest, w *Work) {
	switch {
	case IsJudgeKey(w.Key):
		r.Mode = ModeSynthesize
		r.Previous, r.Critiques, r.Feedback = nil, nil, ""
		r.Candidates = anonymize(d.ID, w.AgentID, w.Stage, d.answersAt(w.Stage, ""))
	case d.protocol() == ProtocolDebate && w.Stage > 0:
		r.Mode = ModeDebate
		r.Critiques = nil
		r.Candidates = anonymize(d.ID, w.AgentID, w.Stage, d.answersAt(w.Stage-1, w.AgentID))
	case d.protocol() == ProtocolVote || d.protocol() == ProtocolDebate:
		r.Mode = ModeAnswer
	}
}

// step is what advanceProtocol did.
type step int

const (
	// stepNone: nothing; the critique_revise flow of advance goes on.
	stepNone step = iota
	// stepContinue: the state moved; advance loops again.
	stepContinue
	// stepStop: the state moved as far as it can for now.
	stepStop
)

// advanceProtocol moves a deliberation whose current phase is done as its
// protocol asks, where that differs from critique_revise.
func (d *Deliberation) advanceProtocol(alive []Agent, now time.Time) step {
	c := d.Task.Constraints
	switch {
	case d.Phase == PhaseJudging:
		d.finish(now, "")
		return stepStop
	case d.Phase == PhaseAwaitingReview || d.Task.Kind.SinglePass() || len(alive) < 2:
		return stepNone
	}
	p := d.protocol()
	if d.Phase == PhaseCritiquing {
		switch {
		case p != ProtocolCritiqueRevise:
			// The only critiques of the other protocols are the final review.
			d.finish(now, "")
			return stepStop
		case c.StopWhenStable && d.Stage > 0 && d.Stage < c.Rounds && slices.Equal(d.stageOrder(d.Stage), d.stageOrder(d.Stage-1)):
			d.finish(now, "")
			return stepStop
		}
		return stepNone
	}
	switch p {
	case ProtocolJudge:
		d.finish(now, "")
		return stepStop
	case ProtocolVote:
		if _, ok := d.plurality(d.Stage); ok {
			d.finish(now, "")
			return stepStop
		}
		return d.finalReview(alive, now)
	case ProtocolDebate:
		stable := false
		if c.StopWhenStable && d.Stage > 0 {
			a, ok := d.plurality(d.Stage)
			b, okPrev := d.plurality(d.Stage - 1)
			stable = ok && okPrev && a == b
		}
		if d.Stage < c.Rounds && !stable {
			if ok, _ := d.affords(len(alive), d.debatePrompts(alive)); !ok {
				d.finish(now, ReasonBudgetExceeded)
				return stepStop
			}
			d.revise(alive, now)
			return stepContinue
		}
		if _, ok := d.plurality(d.Stage); ok {
			d.finish(now, "")
			return stepStop
		}
		return d.finalReview(alive, now)
	}
	return stepNone
}

// finalReview asks for the critiques that rank the answers of the current
// stage when no vote decides them; when the budget cannot pay for them the
// answers are ranked unscored.
func (d *Deliberation) finalReview(alive []Agent, now time.Time) step {
	if ok, _ := d.affords(d.critiqueCount(alive), d.critiquePrompts(alive)); !ok {
		d.finish(now, ReasonBudgetExceeded)
		return stepStop
	}
	d.assignCritiques(alive, now)
	d.Phase = PhaseCritiquing
	return stepContinue
}

// stageOrder is the agents of stage in the order of the mean overall score
// of their critiques (ties and unscored in task order): what
// stop_when_stable compares between two rounds.
func (d *Deliberation) stageOrder(stage int) []string {
	type scored struct {
		id    string
		score float64
		n     int
	}
	var all []scored
	for _, a := range d.survivors(stage) {
		s := scored{id: a.ID}
		for _, c := range d.critiquesOf(stage, a.ID) {
			s.score += c.Overall
			s.n++
		}
		if s.n > 0 {
			s.score /= float64(s.n)
		}
		all = append(all, s)
	}
	slices.SortStableFunc(all, func(a, b scored) int {
		switch {
		case (a.n > 0) != (b.n > 0):
			if a.n > 0 {
				return -1
			}
			return 1
		case a.score > b.score:
			return -1
		case a.score < b.score:
			return 1
		}
		return 0
	})
	out := make([]string, len(all))
	for i, s := range all {
		out[i] = s.id
	}
	return out
}

// debatePrompts estimates the prompts of the next debate round of alive.
func (d *Deliberation) debatePrompts(alive []Agent) int {
	n := 0
	for _, a := range alive {
		r := ProposalRequest{DeliberationID: d.ID, Task: d.Task.For(a), Agent: a, Stage: d.Stage + 1, Mode: ModeDebate}
		if p, ok := d.Proposals[ProposalKey(d.Stage, a.ID)]; ok {
			r.Previous = &p
		}
		r.Candidates = anonymize(d.ID, a.ID, d.Stage+1, d.answersAt(d.Stage, a.ID))
		n += EstimateTokens(ProposalMessages(r))
	}
	return n
}

// protocolResult adds to r, the ranking of a completed deliberation, what
// its protocol decided: the votes, the judge's final answer, the rounds run.
func (d *Deliberation) protocolResult(r *Result) {
	p := d.protocol()
	r.Protocol = p
	r.RoundsRun = d.Stage
	if p == ProtocolVote || p == ProtocolDebate {
		r.Votes = d.votes(d.Stage)
		if answer, ok := d.plurality(d.Stage); ok {
			orderByVotes(r, answer)
		}
	}
	if f, ok := d.final(); ok {
		r.Final = &f
		if p == ProtocolJudge {
			r.Winner = f.AgentID
		}
	}
}

// orderByVotes ranks the answers a vote decided (no final review ran, so
// none is scored) by the votes of their extracted answer, the plurality
// answer first, ties in task order; the winner is the first agent, in task
// order, that gave it.
func orderByVotes(r *Result, winner string) {
	count := map[string]int{}
	for _, v := range r.Votes {
		count[v.Answer] = v.Count
	}
	slices.SortStableFunc(r.Ranking, func(a, b Ranked) int {
		return count[ExtractAnswer(b.Proposal.Content)] - count[ExtractAnswer(a.Proposal.Content)]
	})
	for i := range r.Ranking {
		r.Ranking[i].Rank = i + 1
	}
	for _, v := range r.Votes {
		if v.Answer == winner && len(v.Agents) > 0 {
			r.Winner = v.Agents[0]
		}
	}
}

// validateProtocol checks the protocol constraints: a known protocol, a
// judge that is one of the agents when one is asked for, a council of at
// least two for the protocols that compare answers.
func (t Task) validateProtocol(add func(string, ...any)) {
	c := t.Constraints
	if !c.Protocol.Valid() {
		add("protocol %q is unknown (want critique_revise, debate, vote or judge)", c.Protocol)
		return
	}
	if c.Protocol != "" && c.Protocol != ProtocolCritiqueRevise && len(t.Agents) < 2 {
		add("protocol %s needs at least 2 agents, got %d", c.Protocol, len(t.Agents))
	}
	if c.Synthesize && t.Kind.SinglePass() {
		add("synthesize needs a council: kind %s is a single-agent structured generation", t.Kind)
	}
	needsJudge := c.Protocol == ProtocolJudge || c.Synthesize
	switch {
	case needsJudge && strings.TrimSpace(c.Judge) == "":
		why := "protocol judge"
		if c.Protocol != ProtocolJudge {
			why = "synthesize"
		}
		add("judge is required for %s: name the agent that writes the final answer", why)
	case c.Judge != "" && !slices.ContainsFunc(t.Agents, func(a Agent) bool { return a.ID == c.Judge }):
		add("judge %q is not one of the agents", c.Judge)
	}
}
