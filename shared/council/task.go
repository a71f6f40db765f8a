package council

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Kind says which flavour of deliberation a task asks for.
type Kind string

// The kinds the fleet's callers use (ORIGINAL.md §3, §4).
const (
	// KindDeliberation is a plain multi-agent deliberation; it needs plan_id and story_id.
	KindDeliberation Kind = "deliberation"
	// KindBacklogReview is a per-role review of a story; it needs story_id and a
	// task id of the form ceremony-{c}:story-{s}:role-{ROLE}.
	KindBacklogReview Kind = "backlog_review"
	// KindTaskExtraction is a single-agent structured generation of tasks
	// from earlier deliberations, against TaskExtractionSchema.
	KindTaskExtraction Kind = "task_extraction"
	// KindTaskDerivation is a single-agent structured generation of the tasks
	// of a plan, against TaskDerivationSchema.
	KindTaskDerivation Kind = "task_derivation"
)

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool {
	switch k {
	case KindDeliberation, KindBacklogReview, KindTaskExtraction, KindTaskDerivation:
		return true
	}
	return false
}

// SinglePass reports whether the kind is one structured generation with no
// critique, revision or ranking.
func (k Kind) SinglePass() bool { return k == KindTaskExtraction || k == KindTaskDerivation }

// Backend says where a deliberation runs.
type Backend string

// Backends.
const (
	// BackendFunctions runs the deliberation through the generate and critique functions.
	BackendFunctions Backend = "functions"
	// BackendRay runs the deliberation as a Ray job (council-agent).
	BackendRay Backend = "ray"
)

// Agent is one member of the council.
type Agent struct {
	// ID names the agent; it appears in NATS subjects, so it is limited to
	// letters, digits, '-' and '_'.
	ID string
	// Role is what the agent focuses on (DEV, QA, ARCHITECT, DEVOPS, DATA, …).
	Role string
	// Model overrides the task's model for this agent when the operator allows it.
	Model string
	// PromptTemplate, when set, is an extra instruction added to the agent's system prompt.
	PromptTemplate string
	// FallbackModels are asked, in order, when the agent's model fails with
	// a retryable server error or times out; all must be allowed, like the
	// model.
	FallbackModels []string
}

// Constraints bound a deliberation.
type Constraints struct {
	StoryID string
	PlanID  string
	// Timeout is the deadline of the whole deliberation from its start.
	Timeout time.Duration
	// MaxRetries is how many times a failed call of one agent is retried; 0 means never.
	MaxRetries int
	// Rounds is the number of revision rounds (≥ 1 for multi-agent kinds).
	Rounds int
	// Peers is how many peers critique each proposal (ring order); ≥ 1.
	Peers int
	// Rubric names the criteria critiques score.
	Rubric []string
	// MaxTokens caps each completion.
	MaxTokens int
	// MaxCalls bounds the calls issued (retries included); 0 means no bound.
	MaxCalls int
	// MaxTotalTokens bounds the tokens of the whole deliberation (see
	// Deliberation.affords for how the next calls are counted); 0 means no
	// bound.
	MaxTotalTokens int
	// Review asks for a human gate (ReviewBeforeFinal); empty means none.
	Review ReviewMode
	// Protocol is how the agents work together (ProtocolCritiqueRevise,
	// the default, when empty).
	Protocol Protocol
	// Judge is the agent that writes the final answer (protocol judge,
	// Synthesize); it must be one of the agents.
	Judge string
	// Synthesize appends the judge stage to any protocol.
	Synthesize bool
	// StopWhenStable ends the rounds early when the ranking (critique_revise)
	// or the voted answer (debate) is the same two rounds in a row.
	StopWhenStable bool
	// Aggregation scores the final proposals from their critiques
	// (AggregationMean by default).
	Aggregation Aggregation
	// FinalReview says who reviews the final proposals: FinalReviewAll by
	// default up to MaxAllPairsAgents agents, FinalReviewPeers above.
	FinalReview FinalReview
	// Metadata is the caller's opaque key/value context (task_type, ceremony_id, …).
	// It is carried through to results; it is never written into a prompt.
	Metadata map[string]string
}

// Task is what a deliberation works on.
type Task struct {
	ID          string
	Description string
	Role        string
	Kind        Kind
	Constraints Constraints
	Agents      []Agent
	// Model is the model every agent uses unless the agent names its own.
	Model   string
	Backend Backend
}

// Defaults and limits of a task.
const (
	DefaultTimeout    = 300 * time.Second
	DefaultMaxRetries = 2
	DefaultRounds     = 1
	DefaultPeers      = 1
	DefaultMaxTokens  = 512
	MaxAgents         = 128
	MaxRounds         = 5
	MaxTimeout        = 6 * time.Hour
	MaxRetriesLimit   = 10
	// MaxFallbackModels bounds an agent's fallback models.
	MaxFallbackModels = 4
	MaxDescription    = 64 << 10
	MaxTokensLimit    = 32768
	// MaxResultBytes bounds the estimated size of everything a deliberation
	// produces. Its state is a header and a record per result, and an event
	// larger than the broker takes goes by reference (the claim check, ADR
	// 8), so no NATS message bounds it any more; this bound keeps one
	// deliberation's result a size its consumers can hold.
	MaxResultBytes = 48 << 20
	// bytesPerToken and critiqueBytes are the estimate's upper bounds for a
	// token of text and a critique bounded by CritiqueSchema.
	bytesPerToken = 4
	critiqueBytes = 2 << 10
)

// DefaultRubric is the rubric critiques score when the task names none.
var defaultRubric = []string{"correctness", "completeness", "clarity", "feasibility"}

// DefaultRubric returns a copy of the default rubric.
func DefaultRubric() []string { return append([]string(nil), defaultRubric...) }

var (
	idPattern          = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	backlogTaskPattern = regexp.MustCompile(`^ceremony-([^:\s]+):story-([^:\s]+):role-([A-Z][A-Z0-9_]*)$`)
	criterionPattern   = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)
)

// ValidAgentID reports whether id can be used as an agent id.
func ValidAgentID(id string) bool { return idPattern.MatchString(id) }

// BacklogReviewTaskID is the parsed form of a backlog review task id.
type BacklogReviewTaskID struct{ Ceremony, Story, Role string }

// ParseBacklogReviewTaskID parses ceremony-{c}:story-{s}:role-{ROLE}.
func ParseBacklogReviewTaskID(id string) (BacklogReviewTaskID, error) {
	m := backlogTaskPattern.FindStringSubmatch(id)
	if m == nil {
		return BacklogReviewTaskID{}, Invalidf("task_id %q: backlog review task ids have the form ceremony-{id}:story-{id}:role-{ROLE}", id)
	}
	return BacklogReviewTaskID{Ceremony: m[1], Story: m[2], Role: m[3]}, nil
}

// WithDefaults returns t with every unset constraint given its default.
// Zero MaxRetries is a valid request ("never retry") and is kept.
func (t Task) WithDefaults() Task {
	c := t.Constraints
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Rounds == 0 {
		c.Rounds = DefaultRounds
	}
	if c.Peers == 0 {
		c.Peers = DefaultPeers
	}
	if c.MaxTokens == 0 {
		c.MaxTokens = DefaultMaxTokens
	}
	if len(c.Rubric) == 0 {
		c.Rubric = DefaultRubric()
	}
	if t.Backend == "" {
		t.Backend = BackendFunctions
	}
	if c.Protocol == "" {
		c.Protocol = ProtocolCritiqueRevise
	}
	if c.Aggregation == "" {
		c.Aggregation = AggregationMean
	}
	if c.FinalReview == "" {
		c.FinalReview = FinalReviewAll
		if len(t.Agents) > MaxAllPairsAgents {
			c.FinalReview = FinalReviewPeers
		}
	}
	if t.Kind.SinglePass() {
		c.Rounds = 0
		c.Peers = 0
	}
	t.Constraints = c
	return t
}

// Validate checks t (after WithDefaults) and returns an error wrapping
// ErrInvalid that names every problem found.
func (t Task) Validate() error {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	c := t.Constraints

	if strings.TrimSpace(t.ID) == "" {
		add("task_id is required")
	} else if len(t.ID) > 256 {
		add("task_id is longer than 256 characters")
	}
	if strings.TrimSpace(t.Description) == "" {
		add("description is required")
	} else if len(t.Description) > MaxDescription {
		add("description is longer than %d bytes", MaxDescription)
	}
	if strings.TrimSpace(t.Role) == "" {
		add("role is required")
	}
	switch {
	case !t.Kind.Valid():
		add("kind %q is unknown (want deliberation, backlog_review, task_extraction or task_derivation)", t.Kind)
	case t.Kind == KindDeliberation:
		if strings.TrimSpace(c.PlanID) == "" {
			add("plan_id is required for kind deliberation")
		}
		if strings.TrimSpace(c.StoryID) == "" {
			add("story_id is required for kind deliberation")
		}
	case t.Kind == KindBacklogReview:
		if strings.TrimSpace(c.StoryID) == "" {
			add("story_id is required for kind backlog_review")
		}
		if t.ID != "" {
			if _, err := ParseBacklogReviewTaskID(t.ID); err != nil {
				add("task_id %q does not have the form ceremony-{id}:story-{id}:role-{ROLE}", t.ID)
			}
		}
	}
	if t.Backend != BackendFunctions && t.Backend != BackendRay {
		add("backend %q is unknown (want functions or ray)", t.Backend)
	}
	switch n := len(t.Agents); {
	case n == 0:
		add("at least one agent is required")
	case n > MaxAgents:
		add("at most %d agents are allowed, got %d", MaxAgents, n)
	case t.Kind.SinglePass() && n != 1:
		add("kind %s is a single-agent structured generation: exactly one agent is required, got %d", t.Kind, n)
	}
	seen := make(map[string]bool, len(t.Agents))
	for i, a := range t.Agents {
		switch {
		case !ValidAgentID(a.ID):
			add("agents[%d].id %q must be 1-64 letters, digits, '-' or '_'", i, a.ID)
		case seen[a.ID]:
			add("agents[%d].id %q is duplicated", i, a.ID)
		}
		seen[a.ID] = true
		if strings.TrimSpace(a.Role) == "" {
			add("agents[%d].role is required", i)
		}
		if len(a.FallbackModels) > MaxFallbackModels {
			add("agents[%d].fallback_models: at most %d are allowed, got %d", i, MaxFallbackModels, len(a.FallbackModels))
		}
		for j, m := range a.FallbackModels {
			switch {
			case strings.TrimSpace(m) == "":
				add("agents[%d].fallback_models[%d] is empty", i, j)
			case slices.Contains(a.FallbackModels[:j], m):
				add("agents[%d].fallback_models[%d] %q is duplicated", i, j, m)
			}
		}
	}
	if c.Timeout <= 0 || c.Timeout > MaxTimeout {
		add("timeout_seconds must be between 1 and %d", int(MaxTimeout.Seconds()))
	}
	if c.MaxRetries < 0 || c.MaxRetries > MaxRetriesLimit {
		add("max_retries must be between 0 and %d", MaxRetriesLimit)
	}
	if !t.Kind.SinglePass() {
		if c.Rounds < 1 || c.Rounds > MaxRounds {
			add("rounds must be between 1 and %d", MaxRounds)
		}
		if c.Peers < 1 {
			add("peers must be at least 1")
		} else if len(t.Agents) > 1 && c.Peers > len(t.Agents)-1 {
			add("peers must be at most the number of other agents (%d), got %d", len(t.Agents)-1, c.Peers)
		}
	}
	if c.MaxTokens < 1 || c.MaxTokens > MaxTokensLimit {
		add("max_tokens must be between 1 and %d", MaxTokensLimit)
	} else if size := t.resultSize(); size > MaxResultBytes {
		add("agents × (rounds + 1) × max_tokens could produce about %d KiB of proposals and critiques, more than the %d KiB "+
			"a deliberation's result may hold: lower max_tokens, rounds or the number of agents",
			size>>10, MaxResultBytes>>10)
	}
	t.validateControl(add)
	t.validateProtocol(add)
	t.validateAggregation(add)
	for i, r := range c.Rubric {
		if !criterionPattern.MatchString(r) {
			add("rubric[%d] %q must be a lower_snake_case name", i, r)
		}
	}
	if len(problems) > 0 {
		return Invalidf("%s", strings.Join(problems, "; "))
	}
	return nil
}

// ResultSize estimates the largest output of t in bytes: every proposal of
// every stage at max_tokens, and every critique.
func (t Task) ResultSize() int { return t.resultSize() }

func (t Task) resultSize() int {
	c := t.Constraints
	agents, stages := len(t.Agents), c.Rounds+1
	if t.Kind.SinglePass() {
		return agents * c.MaxTokens * bytesPerToken
	}
	critiques := agents * c.Peers * stages
	if c.FinalReview == FinalReviewAll && agents > 1 {
		// The final stage is reviewed by all pairs.
		critiques += agents * (agents - 1 - min(c.Peers, agents-1))
	}
	return agents*stages*c.MaxTokens*bytesPerToken + critiques*critiqueBytes
}

// For returns t as one call of agent a needs it: with a as its only
// agent. A work event carries the task to the function that makes the
// call; the other agents are of no use there, and with a large council
// they would be most of every event (81 agents: 81 × 81 agents per stage).
//
// The settings of the whole council go too — protocol, judge, synthesize,
// stop_when_stable: the deliberation applies them, and the request says
// what the call needs (ProposalRequest.Mode and Candidates).
func (t Task) For(a Agent) Task {
	t.Agents = []Agent{a}
	c := &t.Constraints
	c.Protocol, c.Judge, c.Synthesize, c.StopWhenStable = ProtocolCritiqueRevise, "", false, false
	return t
}

// ModelFor returns the model agent a uses for t.
func (t Task) ModelFor(a Agent) string {
	if a.Model != "" {
		return a.Model
	}
	return t.Model
}

// CheckModels checks that every model t names is allowed: the task's model,
// each agent's model and fallback models (an empty model is the default
// model, always allowed). The error wraps ErrInvalid and names each model
// refused and where it is named.
func (t Task) CheckModels(allowed []string) error {
	var problems []string
	check := func(where, m string) {
		if m != "" && !slices.Contains(allowed, m) {
			problems = append(problems, fmt.Sprintf("%s %q is not allowed", where, m))
		}
	}
	check("model", t.Model)
	for i, a := range t.Agents {
		check(fmt.Sprintf("agents[%d].model", i), a.Model)
		for j, m := range a.FallbackModels {
			check(fmt.Sprintf("agents[%d].fallback_models[%d]", i, j), m)
		}
	}
	if len(problems) > 0 {
		return Invalidf("%s (allowed: %s)", strings.Join(problems, "; "), strings.Join(allowed, ", "))
	}
	return nil
}

// validateControl checks the budgets and the review gate: a budget must
// pay for the first proposals at least, and the gate needs critique
// rounds to wait after and the functions backend (the Ray job runs its
// rounds in one process and cannot wait hours for a human).
func (t Task) validateControl(add func(string, ...any)) {
	c := t.Constraints
	if c.MaxCalls < 0 {
		add("max_calls must not be negative")
	} else if c.MaxCalls > 0 && c.MaxCalls < len(t.Agents) {
		add("max_calls=%d cannot pay for the first proposals of %d agents", c.MaxCalls, len(t.Agents))
	}
	if c.MaxTotalTokens < 0 {
		add("max_total_tokens must not be negative")
	} else if c.MaxTotalTokens > 0 && c.MaxTokens > 0 {
		if prompts := t.firstPrompts(); c.MaxTotalTokens < prompts+len(t.Agents)*c.MaxTokens {
			add("max_total_tokens=%d cannot pay for the first proposals: %d agents × max_tokens=%d and prompts of about %d tokens",
				c.MaxTotalTokens, len(t.Agents), c.MaxTokens, prompts)
		}
	}
	switch {
	case !c.Review.Valid():
		add("review %q is unknown (want before_final, or none)", c.Review)
	case c.Review == ReviewNone:
	case t.Kind.SinglePass():
		add("review %s needs critique rounds: kind %s has none", c.Review, t.Kind)
	case t.Backend == BackendRay:
		add("review %s is not supported with backend ray: the Ray job runs every round in one process; use backend functions", c.Review)
	}
}
