package council

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"strings"
	"time"
)

// ProposalRequest asks one agent for a proposal (stage 0) or for the
// revision of its own proposal from the critiques it received (stage ≥ 1).
type ProposalRequest struct {
	DeliberationID string
	Key            string
	Task           Task
	Agent          Agent
	Stage          int
	Attempt        int
	// Deadline is the deliberation's deadline: no LLM call of this work
	// runs past it (zero: none, as sent by producers from before it).
	Deadline time.Time
	// Previous is the agent's own proposal of the previous stage (revisions only).
	Previous *Proposal
	// Critiques are the critiques Previous received (revisions only).
	Critiques []Critique
	// Feedback is the human reviewer's feedback this revision addresses
	// (a round the review gate asked for); empty otherwise.
	Feedback string
	// Mode is the prompt the protocol asks for (zero: critique_revise).
	Mode ProposalMode
	// Candidates are the answers the call reads, anonymized and shuffled
	// for its agent: the other agents' latest answers (ModeDebate), or
	// every agent's answer (ModeSynthesize).
	Candidates []Candidate
}

// CritiqueRequest asks a reviewer for a structured critique of a peer's proposal.
type CritiqueRequest struct {
	DeliberationID string
	Key            string
	Task           Task
	Reviewer       Agent
	Proposal       Proposal
	Stage          int
	Attempt        int
	// Deadline is the deliberation's deadline (see ProposalRequest.Deadline).
	Deadline time.Time
}

// ProposalRequest returns the request for proposal work key.
func (d *Deliberation) ProposalRequest(key string) (ProposalRequest, error) {
	w, ok := d.Work[key]
	if !ok || w.Kind != WorkProposal {
		return ProposalRequest{}, fmt.Errorf("%w: deliberation %s has no proposal work %q", ErrNotFound, d.ID, key)
	}
	a, _ := d.Agent(w.AgentID)
	r := ProposalRequest{
		DeliberationID: d.ID, Key: key, Task: d.Task.For(a), Agent: a, Stage: w.Stage, Attempt: w.Attempt, Deadline: d.Deadline,
	}
	if w.Stage > 0 {
		if p, ok := d.Proposals[ProposalKey(w.Stage-1, a.ID)]; ok {
			r.Previous = &p
		}
		r.Critiques = d.critiquesOf(w.Stage-1, a.ID)
		r.Feedback = d.FeedbackFor(w.Stage)
	}
	d.protocolRequest(&r, w)
	return r, nil
}

// CritiqueRequest returns the request for critique work key.
func (d *Deliberation) CritiqueRequest(key string) (CritiqueRequest, error) {
	w, ok := d.Work[key]
	if !ok || w.Kind != WorkCritique {
		return CritiqueRequest{}, fmt.Errorf("%w: deliberation %s has no critique work %q", ErrNotFound, d.ID, key)
	}
	a, _ := d.Agent(w.AgentID)
	return CritiqueRequest{
		DeliberationID: d.ID, Key: key, Task: d.Task.For(a), Reviewer: a,
		Proposal: d.Proposals[ProposalKey(w.Stage, w.AuthorID)], Stage: w.Stage, Attempt: w.Attempt,
		Deadline: d.Deadline,
	}, nil
}

var roleFocus = map[string]string{
	"DEV":            "clean, tested, maintainable code and a concrete implementation path",
	"QA":             "test strategy, edge cases, failure modes and how each requirement is verified",
	"ARCHITECT":      "system design, boundaries, trade-offs and scalability",
	"DEVOPS":         "deployment, CI/CD, observability and reliability in production",
	"DATA":           "data pipelines, data quality, schemas and migrations",
	"TASK_EXTRACTOR": "extracting concrete, actionable, ordered tasks from deliberations",
}

// systemPrompt is the part of every prompt of a deliberation that is the
// same for all its agents, rounds, proposals and critiques: the council
// preamble, the rubric and the task. It comes first, so that an LLM server's
// prefix cache (vLLM automatic prefix caching) computes it once per
// deliberation; what differs per agent and per round comes after it.
func systemPrompt(t Task) string {
	var b strings.Builder
	b.WriteString("You are a member of a council of software engineering agents. Each member proposes, reviews its peers' proposals and revises its own.\n")
	fmt.Fprintf(&b, "Proposals are judged on: %s.\n\n", strings.Join(t.Constraints.Rubric, ", "))
	fmt.Fprintf(&b, "Task %s:\n%s\n", t.ID, t.Description)
	return b.String()
}

// rolePrompt is the per-agent head of the user prompt.
func rolePrompt(b *strings.Builder, a Agent) {
	role := strings.ToUpper(strings.TrimSpace(a.Role))
	focus, ok := roleFocus[role]
	if !ok {
		focus = "the concerns an expert " + a.Role + " engineer brings"
	}
	fmt.Fprintf(b, "You are %s. Your role is %s; you focus on %s.\n", a.ID, role, focus)
	if a.PromptTemplate != "" {
		b.WriteString(a.PromptTemplate)
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

// ProposalMessages builds the chat messages of a proposal request: the
// deliberation's stable text first, then the agent's role and the round's
// instructions.
func ProposalMessages(r ProposalRequest) []Message {
	return []Message{{Role: "system", Content: systemPrompt(r.Task)}, {Role: "user", Content: proposalUser(r)}}
}

// proposalUser is the user message of a proposal request.
func proposalUser(r ProposalRequest) string {
	var u strings.Builder
	if r.Previous != nil {
		u.Grow(1024 + 2*len(r.Previous.Content))
	}
	rolePrompt(&u, r.Agent)
	switch {
	case r.Mode == ModeSynthesize:
		judgeUser(&u, r)
	case r.Mode == ModeDebate:
		debateUser(&u, r)
	case r.Mode == ModeAnswer:
		u.WriteString("Answer the task on your own.\n" + answerInstruction)
		writeFeedback(&u, r.Feedback)
	case r.Task.Kind.SinglePass():
		u.WriteString("Answer with JSON that matches the requested schema, and nothing else.\n")
	case r.Previous == nil:
		u.WriteString("Write your proposal. Cover: 1) analysis of the requirements, 2) the solution approach, " +
			"3) implementation details, 4) risks and how to mitigate them.\n")
	default:
		u.WriteString("Revise your own proposal below using the critiques your peers gave it. Keep what works, " +
			"fix every issue raised, and answer with the complete revised proposal.\n\n")
		fmt.Fprintf(&u, "Your proposal (round %d):\n%s\n", r.Previous.Stage, r.Previous.Content)
		for i, c := range r.Critiques {
			fmt.Fprintf(&u, "\nCritique %d (overall %.2f):\n", i+1, c.Overall)
			writeList(&u, "Strengths", c.Strengths)
			writeList(&u, "Issues", c.Issues)
			writeList(&u, "Suggestions", c.Suggestions)
		}
		writeFeedback(&u, r.Feedback)
	}
	return u.String()
}

// CritiqueMessages builds the chat messages of a critique request.
func CritiqueMessages(r CritiqueRequest) []Message {
	return []Message{{Role: "system", Content: systemPrompt(r.Task)}, {Role: "user", Content: critiqueUser(r)}}
}

// critiqueUser is the user message of a critique request.
func critiqueUser(r CritiqueRequest) string {
	var u strings.Builder
	u.Grow(512 + len(r.Proposal.Content))
	rolePrompt(&u, r.Reviewer)
	// The author is not named: a reviewer judges the text, not who wrote it.
	fmt.Fprintf(&u, "Review the proposal below, written by another member of the council. Score each criterion (%s) and the proposal overall "+
		"from 0 (unusable) to 10 (excellent); name strengths, issues and actionable suggestions. Answer with JSON only.\n\n",
		strings.Join(r.Task.Constraints.Rubric, ", "))
	fmt.Fprintf(&u, "Proposal:\n%s\n", r.Proposal.Content)
	return u.String()
}

func writeList(b *strings.Builder, title string, items []string) {
	if len(items) == 0 {
		return
	}
	fmt.Fprintf(b, "%s:\n", title)
	for _, it := range items {
		fmt.Fprintf(b, "- %s\n", it)
	}
}

// Critique output bounds: the schema caps list lengths and string sizes so a
// model cannot run away inside the JSON, and CritiqueMaxTokens leaves room
// for the largest critique the schema allows. Scores are an enum of the
// integers 0..10: every structured-output engine (vLLM's xgrammar and
// guidance, llama.cpp grammars) enforces an enum, while some ignore
// minimum/maximum.
const (
	critiqueMaxItems  = 3
	critiqueMaxLength = 160
	scoreScale        = 10
	// CritiqueMaxTokens is the completion budget of a critique.
	CritiqueMaxTokens = 1536
)

// CritiqueSchema returns the JSON Schema a critique must follow for rubric:
// integer scores 0..10 per criterion and overall (normalised to [0,1] by
// ParseCritique), bounded lists of strengths, issues and suggestions, and
// the reviewer's confidence in its scores (0..10, also normalised).
func CritiqueSchema(rubric []string) JSONSchema {
	levels := make([]int, scoreScale+1)
	for i := range levels {
		levels[i] = i
	}
	score := map[string]any{"type": "integer", "minimum": 0, "maximum": scoreScale, "enum": levels}
	props := map[string]any{}
	for _, name := range rubric {
		props[name] = score
	}
	list := map[string]any{"type": "array", "maxItems": critiqueMaxItems,
		"items": map[string]any{"type": "string", "maxLength": critiqueMaxLength}}
	schema := map[string]any{
		"type": "object",
		"properties": map[string]any{
			"scores":  map[string]any{"type": "object", "properties": props, "required": rubric, "additionalProperties": false},
			"overall": score, "strengths": list, "issues": list, "suggestions": list,
			// How sure the reviewer is of its scores, 0..10 like a score:
			// aggregation confidence weighs the critique by it.
			"confidence": score,
		},
		"required":             []string{"scores", "overall", "strengths", "issues", "suggestions", "confidence"},
		"additionalProperties": false,
	}
	b, _ := json.Marshal(schema) // maps of strings, ints and slices always marshal
	return JSONSchema{Name: "critique", Schema: b, Strict: true}
}

type critiqueOutput struct {
	Scores      map[string]json.Number `json:"scores"`
	Overall     *json.Number           `json:"overall"`
	Strengths   []string               `json:"strengths"`
	Issues      []string               `json:"issues"`
	Suggestions []string               `json:"suggestions"`
	// Confidence is optional on read: a model or a recorded reply from
	// before it may leave it out.
	Confidence *json.Number `json:"confidence"`
}

// ParseCritique parses model output that should follow CritiqueSchema. It
// returns an error wrapping ErrBadOutput that says what is wrong.
func ParseCritique(content string, rubric []string) (Critique, error) {
	var out critiqueOutput
	dec := json.NewDecoder(strings.NewReader(strings.TrimSpace(content)))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		return Critique{}, fmt.Errorf("%w: critique is not valid JSON: %w", ErrBadOutput, err)
	}
	norm := func(name string, n json.Number) (float64, error) {
		v, err := n.Float64()
		if err != nil || math.IsNaN(v) || v < 0 || v > scoreScale {
			return 0, fmt.Errorf("%w: score %s=%q is not a number in [0,%d]", ErrBadOutput, name, n, scoreScale)
		}
		return v / scoreScale, nil
	}
	if out.Overall == nil {
		return Critique{}, fmt.Errorf("%w: critique has no overall score", ErrBadOutput)
	}
	c := Critique{Scores: map[string]float64{}, Strengths: out.Strengths, Issues: out.Issues, Suggestions: out.Suggestions}
	var err error
	if c.Overall, err = norm("overall", *out.Overall); err != nil {
		return Critique{}, err
	}
	if out.Confidence != nil {
		v, err := norm("confidence", *out.Confidence)
		if err != nil {
			return Critique{}, err
		}
		c.Confidence = &v
	}
	for _, name := range rubric {
		n, ok := out.Scores[name]
		if !ok {
			return Critique{}, fmt.Errorf("%w: critique has no score for criterion %q", ErrBadOutput, name)
		}
		if c.Scores[name], err = norm(name, n); err != nil {
			return Critique{}, err
		}
	}
	return c, nil
}

// Sampling of proposals: a base temperature, spread per agent for
// diversity; structured output is sampled greedily.
const (
	baseTemperature   = 0.7
	temperatureSpread = 0.1
)

func sampling(deliberation string, t Task, a Agent, stage, attempt int) (float64, *int64) {
	seed := seedOf(attempt, "%s/%s/%d", deliberation, a.ID, stage)
	if t.Kind.SinglePass() {
		return 0, seed
	}
	// The spread follows the agent's id, not its place in the task: a
	// call's request carries only its own agent (Task.For).
	h := fnv.New32a()
	h.Write([]byte(a.ID))
	return baseTemperature + temperatureSpread*float64(h.Sum32()%4), seed
}

// seedOf is the sampling seed of one call: the same for a redelivered event
// (so a duplicate reproduces the same text), a new one for each retry
// (attempt > 1), so that an output the model got wrong (invalid JSON cut
// at max_tokens, say) is not drawn again.
func seedOf(attempt int, format string, args ...any) *int64 {
	h := fnv.New64a()
	fmt.Fprintf(h, format, args...)
	if attempt > 1 {
		fmt.Fprintf(h, "/attempt-%d", attempt)
	}
	seed := int64(h.Sum64() & math.MaxInt32)
	return &seed
}

// Generate runs a proposal request on llm. onToken, when not nil, receives
// the streamed text. Structured kinds are checked to be JSON objects.
func Generate(ctx context.Context, llm Completer, r ProposalRequest, onToken func(string)) (Proposal, error) {
	if err := CheckWorkIDs(r.DeliberationID, r.Key, r.Agent.ID); err != nil {
		return Proposal{}, fmt.Errorf("generate: %w", err)
	}
	temp, seed := sampling(r.DeliberationID, r.Task, r.Agent, r.Stage, r.Attempt)
	req := CompletionRequest{
		Model: r.Task.ModelFor(r.Agent), Fallbacks: r.Agent.FallbackModels, Messages: ProposalMessages(r),
		Temperature: temp, MaxTokens: r.Task.Constraints.MaxTokens, Seed: seed, OnToken: onToken,
	}
	if s, ok := StructuredSchema(r.Task.Kind); ok {
		req.Schema = &s
	}
	start := time.Now()
	c, err := llm.Complete(ctx, req)
	if err != nil {
		return Proposal{}, fmt.Errorf("generate %s: %w", r.Key, err)
	}
	if req.Schema != nil {
		var obj map[string]any
		err := json.Unmarshal([]byte(c.Content), &obj)
		if err == nil && obj == nil {
			err = errors.New("got null") // null unmarshals into a map without error
		}
		if err != nil {
			return Proposal{}, fmt.Errorf("generate %s: %w: structured output is not a JSON object: %w", r.Key, ErrBadOutput, err)
		}
	}
	if strings.TrimSpace(c.Content) == "" {
		return Proposal{}, fmt.Errorf("generate %s: %w: empty completion", r.Key, ErrBadOutput)
	}
	return Proposal{
		AgentID: r.Agent.ID, Role: r.Agent.Role, Stage: r.Stage, Content: c.Content, Reasoning: c.Reasoning,
		Model: c.Model, Usage: c.Usage, Duration: time.Since(start), Attempt: r.Attempt,
	}, nil
}

// Review runs a critique request on llm with structured output.
func Review(ctx context.Context, llm Completer, r CritiqueRequest) (Critique, error) {
	if err := CheckWorkIDs(r.DeliberationID, r.Key, r.Reviewer.ID); err != nil {
		return Critique{}, fmt.Errorf("critique: %w", err)
	}
	s := CritiqueSchema(r.Task.Constraints.Rubric)
	seed := seedOf(r.Attempt, "%s/%s", r.DeliberationID, r.Key)
	start := time.Now()
	c, err := llm.Complete(ctx, CompletionRequest{
		Model: r.Task.ModelFor(r.Reviewer), Fallbacks: r.Reviewer.FallbackModels, Messages: CritiqueMessages(r),
		Temperature: 0.2, MaxTokens: CritiqueMaxTokens, Seed: seed, Schema: &s,
	})
	if err != nil {
		return Critique{}, fmt.Errorf("critique %s: %w", r.Key, err)
	}
	out, err := ParseCritique(c.Content, r.Task.Constraints.Rubric)
	if err != nil {
		return Critique{}, fmt.Errorf("critique %s: %w", r.Key, err)
	}
	out.ReviewerID, out.AuthorID, out.Stage = r.Reviewer.ID, r.Proposal.AgentID, r.Stage
	out.Model, out.Usage, out.Duration, out.Attempt = c.Model, c.Usage, time.Since(start), r.Attempt
	return out, nil
}

// PastDeadline returns the error of work whose deliberation's deadline has
// passed at now: permanent (it wraps ErrInvalid, so the failure is not
// retried), saying that the work was dropped without an LLM call. It
// returns nil for a zero deadline (none) or one still ahead.
func PastDeadline(deadline, now time.Time) error {
	if deadline.IsZero() || now.Before(deadline) {
		return nil
	}
	return fmt.Errorf("%w: the deliberation's deadline %s passed %s ago: work dropped without calling the LLM",
		ErrInvalid, deadline.UTC().Format(time.RFC3339Nano), now.Sub(deadline).Round(time.Millisecond))
}

// CallBy runs call with ctx bounded by deadline, the deliberation's (no
// bound when zero), so that no LLM call or retry of the work runs past
// it. An error of a call the deadline cut short (the bounded context
// ended, ctx did not) is made permanent — it wraps ErrInvalid and says so
// — since the work can no longer count: it must not be retried.
func CallBy(ctx context.Context, deadline time.Time, call func(ctx context.Context) error) error {
	if deadline.IsZero() {
		return call(ctx)
	}
	cctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	err := call(cctx)
	if err != nil && cctx.Err() != nil && ctx.Err() == nil {
		return fmt.Errorf("%w: the deliberation's deadline %s passed during the call: %w",
			ErrInvalid, deadline.UTC().Format(time.RFC3339Nano), err)
	}
	return err
}
