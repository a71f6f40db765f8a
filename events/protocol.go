package events

import (
	"strings"

	"council.dev/shared/council"
)

// The wire form of what the deliberation protocols add (council.Protocol):
// the anonymized answers a debate round or a judge reads, the vote tally
// and the judge's final answer of a result.

// Candidate is an answer a prompt shows without its author: a label
// ("Answer A") and the text.
type Candidate struct {
	Label   string `json:"label"`
	Content string `json:"content"`
}

// Vote is one distinct extracted answer of the final stage and the agents
// that gave it.
type Vote struct {
	Answer string   `json:"answer"`
	Count  int      `json:"count"`
	Agents []string `json:"agents"`
}

// Final is the judge's final answer: Picked is the label of the answer it
// took as it was, empty when it wrote its own synthesis.
type Final struct {
	AgentID string `json:"agent_id"`
	Content string `json:"content"`
	Picked  string `json:"picked"`
	Usage   Usage  `json:"usage"`
}

func candidatesOf(cs []council.Candidate) []Candidate {
	if len(cs) == 0 {
		return nil
	}
	out := make([]Candidate, len(cs))
	for i, c := range cs {
		out[i] = Candidate(c)
	}
	return out
}

// candidates maps the candidates of a request back, checking each has a
// label.
func candidates(cs []Candidate) ([]council.Candidate, error) {
	var out []council.Candidate
	for i, c := range cs {
		if strings.TrimSpace(c.Label) == "" {
			return nil, council.Invalidf("candidates[%d].label is empty", i)
		}
		out = append(out, council.Candidate(c))
	}
	return out, nil
}

// proposalMode checks the mode of a request.
func proposalMode(m string, candidates int) (council.ProposalMode, error) {
	mode := council.ProposalMode(m)
	switch {
	case !mode.Valid():
		return "", council.Invalidf("mode %q is unknown (want answer, debate or synthesize, or none)", m)
	case (mode == council.ModeDebate || mode == council.ModeSynthesize) && candidates == 0:
		return "", council.Invalidf("mode %s needs candidates: the answers the agent reads", m)
	}
	return mode, nil
}

func votesOf(vs []council.Vote) []Vote {
	if len(vs) == 0 {
		return nil
	}
	out := make([]Vote, len(vs))
	for i, v := range vs {
		out[i] = Vote{Answer: v.Answer, Count: v.Count, Agents: list(v.Agents)}
	}
	return out
}

func finalOf(f *council.Final) *Final {
	if f == nil {
		return nil
	}
	return &Final{AgentID: f.AgentID, Content: f.Content, Picked: f.Picked, Usage: usageOf(f.Usage)}
}

func domainVotes(vs []Vote) []council.Vote {
	if len(vs) == 0 {
		return nil
	}
	out := make([]council.Vote, len(vs))
	for i, v := range vs {
		out[i] = council.Vote{Answer: v.Answer, Count: v.Count, Agents: nilIfEmpty(v.Agents)}
	}
	return out
}

func (f *Final) final() *council.Final {
	if f == nil {
		return nil
	}
	return &council.Final{AgentID: f.AgentID, Content: f.Content, Picked: f.Picked, Usage: f.Usage.usage()}
}
