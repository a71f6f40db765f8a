package events

import (
	"bytes"
	"encoding/json"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"council.dev/shared/council"
)

// This file maps domain values to payload structs and back. Encoding
// writes empty lists and maps as [] and {}; decoding turns them back into
// nil, so that encode → decode gives back the domain value.

func requestOf(t council.Task) Request {
	c := t.Constraints
	r := Request{
		TaskID: t.ID, Description: t.Description, Role: t.Role, Kind: string(t.Kind),
		Model: t.Model, Backend: string(t.Backend),
		Constraints: Constraints{
			StoryID: c.StoryID, PlanID: c.PlanID, Rounds: c.Rounds, Peers: c.Peers,
			Rubric: slices.Clone(c.Rubric), MaxTokens: c.MaxTokens, Metadata: maps.Clone(c.Metadata),
			MaxRetries: ptr(c.MaxRetries), MaxCalls: c.MaxCalls, MaxTotalTokens: c.MaxTotalTokens,
			Review: string(c.Review), Protocol: string(c.Protocol), Judge: c.Judge,
			Synthesize: c.Synthesize, StopWhenStable: c.StopWhenStable,
			Aggregation: string(c.Aggregation), FinalReview: string(c.FinalReview),
		},
		Agents: make([]Agent, 0, len(t.Agents)),
	}
	if c.Timeout != 0 {
		// Whole seconds, rounded up so that a positive timeout stays positive.
		r.Constraints.TimeoutSeconds = ptr(int((c.Timeout + time.Second - 1) / time.Second))
	}
	for _, a := range t.Agents {
		r.Agents = append(r.Agents, agentOf(a))
	}
	return r
}

// task maps r to a domain task; it does not apply defaults nor validate.
func (r Request) task() (council.Task, error) {
	c := r.Constraints
	t := council.Task{
		ID: r.TaskID, Description: r.Description, Role: r.Role, Kind: council.Kind(r.Kind),
		Model: r.Model, Backend: council.Backend(r.Backend),
		Constraints: council.Constraints{
			StoryID: c.StoryID, PlanID: c.PlanID, Rounds: c.Rounds, Peers: c.Peers,
			Rubric: nilIfEmpty(c.Rubric), MaxTokens: c.MaxTokens, MaxRetries: council.DefaultMaxRetries,
			MaxCalls: c.MaxCalls, MaxTotalTokens: c.MaxTotalTokens, Review: council.ReviewMode(c.Review),
			Protocol: council.Protocol(c.Protocol), Judge: c.Judge, Synthesize: c.Synthesize, StopWhenStable: c.StopWhenStable,
			Aggregation: council.Aggregation(c.Aggregation), FinalReview: council.FinalReview(c.FinalReview),
		},
	}
	if len(c.Metadata) > 0 {
		t.Constraints.Metadata = maps.Clone(c.Metadata)
	}
	if c.TimeoutSeconds != nil {
		s, limit := *c.TimeoutSeconds, int(council.MaxTimeout/time.Second)
		if s < 1 || s > limit {
			return council.Task{}, council.Invalidf("constraints.timeout_seconds must be between 1 and %d, got %d", limit, s)
		}
		t.Constraints.Timeout = time.Duration(s) * time.Second
	}
	if c.MaxRetries != nil {
		t.Constraints.MaxRetries = *c.MaxRetries
	}
	for _, a := range r.Agents {
		t.Agents = append(t.Agents, a.agent())
	}
	return t, nil
}

// validTask maps r to a task with its defaults and validates it.
func (r Request) validTask() (council.Task, error) {
	t, err := r.task()
	if err != nil {
		return council.Task{}, err
	}
	t = t.WithDefaults()
	if err := t.Validate(); err != nil {
		return council.Task{}, err
	}
	return t, nil
}

func agentOf(a council.Agent) Agent {
	return Agent{ID: a.ID, Role: a.Role, Model: a.Model, PromptTemplate: a.PromptTemplate, FallbackModels: slices.Clone(a.FallbackModels)}
}

func (a Agent) agent() council.Agent {
	return council.Agent{ID: a.ID, Role: a.Role, Model: a.Model, PromptTemplate: a.PromptTemplate, FallbackModels: slices.Clone(a.FallbackModels)}
}

func usageOf(u council.Usage) Usage {
	return Usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.TotalTokens, CachedTokens: u.CachedTokens}
}

func (u Usage) usage() council.Usage {
	return council.Usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.TotalTokens, CachedTokens: u.CachedTokens}
}

func (u Usage) check(path string) error {
	if u.PromptTokens < 0 || u.CompletionTokens < 0 || u.TotalTokens < 0 || u.CachedTokens < 0 {
		return council.Invalidf("%s.usage: token counts must not be negative", path)
	}
	return nil
}

func proposalOf(p council.Proposal) Proposal {
	return Proposal{
		AgentID: p.AgentID, Role: p.Role, Stage: p.Stage, Content: p.Content, Reasoning: p.Reasoning,
		Model: p.Model, Usage: usageOf(p.Usage), DurationMS: p.Duration.Milliseconds(), Attempt: p.Attempt,
	}
}

func (p Proposal) proposal() council.Proposal {
	return council.Proposal{
		AgentID: p.AgentID, Role: p.Role, Stage: p.Stage, Content: p.Content, Reasoning: p.Reasoning,
		Model: p.Model, Usage: p.Usage.usage(), Duration: time.Duration(p.DurationMS) * time.Millisecond, Attempt: p.Attempt,
	}
}

// check reports what is wrong with a proposal found at path.
func (p Proposal) check(path string) error {
	switch {
	case !council.ValidAgentID(p.AgentID):
		return council.Invalidf("%s.agent_id %q must be 1-64 letters, digits, '-' or '_'", path, p.AgentID)
	case p.Stage < 0:
		return council.Invalidf("%s.stage must not be negative, got %d", path, p.Stage)
	case p.Attempt < 0:
		return council.Invalidf("%s.attempt must not be negative, got %d", path, p.Attempt)
	case p.DurationMS < 0:
		return council.Invalidf("%s.duration_ms must not be negative, got %d", path, p.DurationMS)
	}
	return p.Usage.check(path)
}

func critiqueOf(c council.Critique) Critique {
	scores := make(map[string]float64, len(c.Scores))
	for k, v := range c.Scores {
		scores[k] = finite(v)
	}
	return Critique{
		ReviewerID: c.ReviewerID, AuthorID: c.AuthorID, Stage: c.Stage, Scores: scores, Overall: finite(c.Overall),
		Strengths: list(c.Strengths), Issues: list(c.Issues), Suggestions: list(c.Suggestions),
		Model: c.Model, Usage: usageOf(c.Usage), DurationMS: c.Duration.Milliseconds(), Attempt: c.Attempt,
		Confidence: finitePtr(c.Confidence),
	}
}

func (c Critique) critique() council.Critique {
	out := council.Critique{
		ReviewerID: c.ReviewerID, AuthorID: c.AuthorID, Stage: c.Stage, Overall: c.Overall,
		Strengths: nilIfEmpty(c.Strengths), Issues: nilIfEmpty(c.Issues), Suggestions: nilIfEmpty(c.Suggestions),
		Model: c.Model, Usage: c.Usage.usage(), Duration: time.Duration(c.DurationMS) * time.Millisecond, Attempt: c.Attempt,
		Confidence: finitePtr(c.Confidence),
	}
	if len(c.Scores) > 0 {
		out.Scores = maps.Clone(c.Scores)
	}
	return out
}

// check reports what is wrong with a critique found at path. Scores out of
// [0,1] are not rejected here: the deliberation records them as a failed
// attempt, which may be retried.
func (c Critique) check(path string) error {
	switch {
	case !council.ValidAgentID(c.ReviewerID):
		return council.Invalidf("%s.reviewer_id %q must be 1-64 letters, digits, '-' or '_'", path, c.ReviewerID)
	case !council.ValidAgentID(c.AuthorID):
		return council.Invalidf("%s.author_id %q must be 1-64 letters, digits, '-' or '_'", path, c.AuthorID)
	case c.Stage < 0:
		return council.Invalidf("%s.stage must not be negative, got %d", path, c.Stage)
	case c.Attempt < 0:
		return council.Invalidf("%s.attempt must not be negative, got %d", path, c.Attempt)
	case c.DurationMS < 0:
		return council.Invalidf("%s.duration_ms must not be negative, got %d", path, c.DurationMS)
	}
	return c.Usage.check(path)
}

func critiquesOf(cs []council.Critique) []Critique {
	out := make([]Critique, 0, len(cs))
	for _, c := range cs {
		out = append(out, critiqueOf(c))
	}
	return out
}

func proposalsOf(ps []council.Proposal) []Proposal {
	out := make([]Proposal, 0, len(ps))
	for _, p := range ps {
		out = append(out, proposalOf(p))
	}
	return out
}

func failuresOf(fs []council.AgentFailure) []Failure {
	out := make([]Failure, 0, len(fs))
	for _, f := range fs {
		out = append(out, Failure{AgentID: f.AgentID, Stage: f.Stage, Reason: f.Reason})
	}
	return out
}

func rankingOf(rs []council.Ranked) []Ranked {
	out := make([]Ranked, 0, len(rs))
	for _, r := range rs {
		scores := make(map[string]float64, len(r.Scores))
		for k, v := range r.Scores {
			scores[k] = finite(v)
		}
		out = append(out, Ranked{
			Rank: r.Rank, Score: finite(r.Score), Scores: scores, Scored: r.Scored,
			Proposal: proposalOf(r.Proposal), Critiques: critiquesOf(r.Critiques), ScoreSpread: spreadOf(r),
		})
	}
	return out
}

// structuredOutput returns content as compact JSON when it is a JSON
// object or array, and nil otherwise.
func structuredOutput(content string) json.RawMessage {
	s := strings.TrimSpace(content)
	if s == "" || (s[0] != '{' && s[0] != '[') {
		return nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		return nil
	}
	return b.Bytes()
}

func metadataOf(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return maps.Clone(m)
}

// finite replaces NaN and ±Inf, which JSON cannot carry, by 0.
func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

func list(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return slices.Clone(s)
}

func ptr[T any](v T) *T { return &v }
