package events

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"council.dev/shared/council"
)

// The Server-Sent Events of GET /deliberations/{id}/events (openapi.yaml):
// the event names, each with its data.
const (
	// LiveProgress carries a LiveState: the deliberation at one revision
	// of its stored state.
	LiveProgress = "progress"
	// LiveToken carries a TokenMessage of one of its agents' completions.
	LiveToken = "token"
	// LiveCompleted and LiveFailed end the stream; they carry the data of
	// deliberation.completed.v1 (Completed) and deliberation.failed.v1
	// (Failed).
	LiveCompleted = "completed"
	LiveFailed    = "failed"
)

// LiveState is the data of a progress event: what GET /deliberations/{id}
// answers, with every LLM call, proposal and critique stored so far, at
// revision Revision of the stored state.
type LiveState struct {
	Revision     uint64           `json:"revision"`
	Deliberation DeliberationView `json:"deliberation"`
	// Agents are the council's agents in the request's order.
	Agents []Agent `json:"agents"`
	// Rubric names the criteria the critiques score.
	Rubric []string `json:"rubric"`
	// Calls are the LLM calls, one per work item (its last attempt), in the
	// order they were requested.
	Calls     []Call     `json:"calls"`
	Proposals []Proposal `json:"proposals"`
	Critiques []Critique `json:"critiques"`
	// Usage is the sum of the usage of every proposal and critique stored.
	Usage Usage `json:"usage"`
}

// Call is one LLM call of a deliberation: a work item, at its last
// attempt. Duration and usage are the answer's (0 while pending or failed).
type Call struct {
	Key         string    `json:"key"`
	Kind        string    `json:"kind"`
	Stage       int       `json:"stage"`
	AgentID     string    `json:"agent_id"`
	AuthorID    string    `json:"author_id,omitempty"`
	Attempt     int       `json:"attempt"`
	State       string    `json:"state"`
	RequestedAt time.Time `json:"requested_at"`
	// StartedAt is when the worker started the LLM call, and QueueWaitMS
	// the time from RequestedAt to it: absent while pending or failed and
	// for answers from producers that do not report it.
	StartedAt   *time.Time `json:"started_at,omitempty"`
	QueueWaitMS *int64     `json:"queue_wait_ms,omitempty"`
	DurationMS  int64      `json:"duration_ms"`
	Usage       Usage      `json:"usage"`
	Error       string     `json:"error,omitempty"`
}

// NewLiveState is the progress event of d at revision rev, around view,
// the deliberation as the queries show it.
func NewLiveState(d *council.Deliberation, rev uint64, view DeliberationView) LiveState {
	s := LiveState{
		Revision: rev, Deliberation: view, Rubric: slices.Clone(d.Task.Constraints.Rubric),
		Agents: []Agent{}, Calls: []Call{}, Proposals: []Proposal{}, Critiques: []Critique{},
	}
	for _, a := range d.Task.Agents {
		s.Agents = append(s.Agents, agentOf(a))
	}
	for _, w := range d.Work {
		c := Call{
			Key: w.Key, Kind: string(w.Kind), Stage: w.Stage, AgentID: w.AgentID, AuthorID: w.AuthorID,
			Attempt: w.Attempt, State: string(w.State), RequestedAt: w.RequestedAt.UTC(), Error: w.LastError,
		}
		if p, ok := d.Proposals[w.Key]; ok {
			c.DurationMS, c.Usage = p.Duration.Milliseconds(), usageOf(p.Usage)
			c.setStarted(p.StartedAt, w.RequestedAt)
		}
		if r, ok := d.Critiques[w.Key]; ok {
			c.DurationMS, c.Usage = r.Duration.Milliseconds(), usageOf(r.Usage)
			c.setStarted(r.StartedAt, w.RequestedAt)
		}
		s.Calls = append(s.Calls, c)
	}
	slices.SortFunc(s.Calls, func(a, b Call) int {
		if c := a.RequestedAt.Compare(b.RequestedAt); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	var u council.Usage
	for _, p := range d.Proposals {
		s.Proposals = append(s.Proposals, proposalOf(p))
		u = u.Add(p.Usage)
	}
	for _, c := range d.Critiques {
		s.Critiques = append(s.Critiques, critiqueOf(c))
		u = u.Add(c.Usage)
	}
	slices.SortFunc(s.Proposals, func(a, b Proposal) int {
		if a.Stage != b.Stage {
			return a.Stage - b.Stage
		}
		return strings.Compare(a.AgentID, b.AgentID)
	})
	slices.SortFunc(s.Critiques, func(a, b Critique) int {
		if a.Stage != b.Stage {
			return a.Stage - b.Stage
		}
		if c := strings.Compare(a.ReviewerID, b.ReviewerID); c != 0 {
			return c
		}
		return strings.Compare(a.AuthorID, b.AuthorID)
	})
	s.Usage = usageOf(u)
	return s
}

// setStarted records when the call started and its queue wait (started
// minus requested, never negative: the clocks of two machines may differ);
// a zero started records nothing.
func (c *Call) setStarted(started, requested time.Time) {
	if started.IsZero() {
		return
	}
	wait, at := max(started.Sub(requested), 0).Milliseconds(), started.UTC()
	c.StartedAt, c.QueueWaitMS = &at, &wait
}

// EncodeLive returns the JSON data of a Server-Sent Event of
// GET /deliberations/{id}/events: a LiveState or a TokenMessage. An error wraps council.ErrInvalid.
func EncodeLive[T LiveState | TokenMessage](v T) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("events: encode live event: %w: %w", council.ErrInvalid, err)
	}
	return b, nil
}

// TokenMessageOf is the wire form of a streamed chunk.
func TokenMessageOf(c council.TokenChunk) TokenMessage {
	return TokenMessage{
		DeliberationID: c.DeliberationID, AgentID: c.AgentID, Stage: c.Stage, Attempt: c.Attempt, Seq: c.Seq, Text: c.Text, Final: c.Final,
	}
}
