package events

import (
	"encoding/json"
	"time"
)

// The payload structs below are the wire format: the JSON data of each event
// type. A field without omitempty/omitzero is required (the JSON Schemas
// list it as required, the decoders validate against them, and
// TestSchemasMatchStructs keeps the two in step), except a field tagged
// schema:"optional": one added to a published version, which the encoders
// always write but the decoders accept without, as older producers send; the
// encoders always write it, with empty lists as [] and empty maps as {},
// never null.

// Request is the data of deliberation.requested.v1: a task to deliberate on.
type Request struct {
	TaskID      string `json:"task_id"`
	Description string `json:"description"`
	Role        string `json:"role"`
	// Kind is deliberation, backlog_review, task_extraction or task_derivation.
	Kind        string      `json:"kind"`
	Constraints Constraints `json:"constraints,omitzero"`
	Agents      []Agent     `json:"agents"`
	Model       string      `json:"model,omitempty"`
	// Backend is functions (the default) or ray.
	Backend string `json:"backend,omitempty"`
}

// Constraints bound a requested deliberation. Zero or absent numbers take
// the defaults of council.Task.WithDefaults.
type Constraints struct {
	StoryID string `json:"story_id,omitempty"`
	PlanID  string `json:"plan_id,omitempty"`
	// TimeoutSeconds is the deadline of the whole deliberation; absent means the default.
	TimeoutSeconds *int `json:"timeout_seconds,omitempty"`
	// MaxRetries is how often a failed call is retried: absent means
	// council.DefaultMaxRetries, 0 means never.
	MaxRetries *int              `json:"max_retries,omitempty"`
	Rounds     int               `json:"rounds,omitempty"`
	Peers      int               `json:"peers,omitempty"`
	Rubric     []string          `json:"rubric,omitempty"`
	MaxTokens  int               `json:"max_tokens,omitempty"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	// MaxCalls bounds the calls issued, retries included; absent or 0
	// means no bound.
	MaxCalls int `json:"max_calls,omitempty"`
	// MaxTotalTokens bounds the tokens of the deliberation (recorded usage
	// plus max_tokens per call about to be issued); absent or 0 means no
	// bound.
	MaxTotalTokens int `json:"max_total_tokens,omitempty"`
	// Review is before_final for a human gate after the critique rounds;
	// absent means none.
	Review string `json:"review,omitempty"`
	// Aggregation is mean (absent: the default), borda or confidence
	// (council.Aggregation).
	Aggregation string `json:"aggregation,omitempty"`
	// FinalReview is all (absent: the default up to
	// council.MaxAllPairsAgents agents) or peers (council.FinalReview).
	FinalReview string `json:"final_review,omitempty"`
	// Protocol is critique_revise (absent: the default), debate, vote or
	// judge (council.Protocol).
	Protocol string `json:"protocol,omitempty"`
	// Judge is the agent that writes the final answer (protocol judge,
	// synthesize); one of the agents.
	Judge string `json:"judge,omitempty"`
	// Synthesize appends the judge's final answer to any protocol.
	Synthesize bool `json:"synthesize,omitempty"`
	// StopWhenStable ends the rounds when the ranking (critique_revise) or
	// the voted answer (debate) is the same two rounds in a row.
	StopWhenStable bool `json:"stop_when_stable,omitempty"`
}

// Agent is one member of the council.
type Agent struct {
	ID             string `json:"id"`
	Role           string `json:"role"`
	Model          string `json:"model,omitempty"`
	PromptTemplate string `json:"prompt_template,omitempty"`
	// FallbackModels are asked, in order, when the agent's model fails
	// with a retryable server error or times out; each must be allowed.
	FallbackModels []string `json:"fallback_models,omitempty"`
}

// Accepted is the data of deliberation.accepted.v1.
type Accepted struct {
	DeliberationID string `json:"deliberation_id"`
	TaskID         string `json:"task_id"`
	// Status is running, completed, failed or cancelled (a replayed request of an ended deliberation).
	Status  string `json:"status"`
	Backend string `json:"backend"`
}

// Usage counts tokens.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
	// CachedTokens are prompt tokens served from the LLM server's prefix
	// cache (0 when the server reports none). Added within v1: always
	// written, but optional on read, since producers from before it omit it.
	CachedTokens int `json:"cached_tokens" schema:"optional"`
}

// Proposal is an agent's answer at one stage (0: first proposal, ≥ 1: revision).
type Proposal struct {
	AgentID    string `json:"agent_id"`
	Role       string `json:"role"`
	Stage      int    `json:"stage"`
	Content    string `json:"content"`
	Reasoning  string `json:"reasoning,omitempty"`
	Model      string `json:"model"`
	Usage      Usage  `json:"usage"`
	DurationMS int64  `json:"duration_ms"`
	Attempt    int    `json:"attempt"`
}

// Critique is a peer review of a proposal; scores are in [0,1].
type Critique struct {
	ReviewerID  string             `json:"reviewer_id"`
	AuthorID    string             `json:"author_id"`
	Stage       int                `json:"stage"`
	Scores      map[string]float64 `json:"scores"`
	Overall     float64            `json:"overall"`
	Strengths   []string           `json:"strengths"`
	Issues      []string           `json:"issues"`
	Suggestions []string           `json:"suggestions"`
	// Confidence is the reviewer's confidence in its scores, in [0,1]
	// (added within v1: absent from older producers and models).
	Confidence *float64 `json:"confidence,omitempty"`
	Model      string   `json:"model"`
	Usage      Usage    `json:"usage"`
	DurationMS int64    `json:"duration_ms"`
	Attempt    int      `json:"attempt"`
}

// ProposalRequested is the data of proposal.requested.v1.
type ProposalRequested struct {
	DeliberationID string  `json:"deliberation_id"`
	Key            string  `json:"key"`
	Attempt        int     `json:"attempt"`
	Stage          int     `json:"stage"`
	Task           Request `json:"task"`
	Agent          Agent   `json:"agent"`
	// Deadline is the deliberation's deadline: generate makes no LLM call
	// past it. Added within v1: absent from older producers (no deadline).
	Deadline time.Time `json:"deadline,omitzero"`
	// Previous is the agent's own proposal of the previous stage (revisions only).
	Previous *Proposal `json:"previous,omitempty"`
	// Critiques are the critiques Previous received (revisions only).
	Critiques []Critique `json:"critiques,omitempty"`
	// ReviewFeedback is the human reviewer's feedback the revision
	// addresses (a round the review gate asked for).
	ReviewFeedback string `json:"review_feedback,omitempty"`
	// Mode is the prompt the protocol asks for: answer, debate or
	// synthesize (council.ProposalMode); absent for critique_revise.
	Mode string `json:"mode,omitempty"`
	// Candidates are the answers the agent reads, anonymized and in its
	// own order: the other agents' latest (debate), every agent's
	// (synthesize).
	Candidates []Candidate `json:"candidates,omitempty"`
}

// ProposalGenerated is the data of proposal.generated.v1.
type ProposalGenerated struct {
	DeliberationID string   `json:"deliberation_id"`
	Key            string   `json:"key"`
	Attempt        int      `json:"attempt"`
	Stage          int      `json:"stage"`
	Proposal       Proposal `json:"proposal"`
	// StartedAt is when generate started the LLM call (after its claim):
	// StartedAt minus the work's request time is the call's queue wait.
	// Added within v1: absent from older producers.
	StartedAt time.Time `json:"started_at,omitzero"`
}

// ProposalFailed is the data of proposal.failed.v1.
type ProposalFailed struct {
	DeliberationID string `json:"deliberation_id"`
	Key            string `json:"key"`
	Attempt        int    `json:"attempt"`
	Stage          int    `json:"stage"`
	AgentID        string `json:"agent_id"`
	Error          string `json:"error"`
	// Retryable says whether another attempt may succeed (council.Retryable).
	Retryable bool `json:"retryable"`
}

// CritiqueRequested is the data of critique.requested.v1.
type CritiqueRequested struct {
	DeliberationID string   `json:"deliberation_id"`
	Key            string   `json:"key"`
	Attempt        int      `json:"attempt"`
	Stage          int      `json:"stage"`
	Task           Request  `json:"task"`
	Reviewer       Agent    `json:"reviewer"`
	Proposal       Proposal `json:"proposal"`
	// Deadline is the deliberation's deadline: critique makes no LLM call
	// past it. Added within v1: absent from older producers (no deadline).
	Deadline time.Time `json:"deadline,omitzero"`
}

// CritiqueCompleted is the data of critique.completed.v1.
type CritiqueCompleted struct {
	DeliberationID string   `json:"deliberation_id"`
	Key            string   `json:"key"`
	Attempt        int      `json:"attempt"`
	Stage          int      `json:"stage"`
	Critique       Critique `json:"critique"`
	// StartedAt is when critique started the LLM call (after its claim).
	// Added within v1: absent from older producers.
	StartedAt time.Time `json:"started_at,omitzero"`
}

// CritiqueFailed is the data of critique.failed.v1.
type CritiqueFailed struct {
	DeliberationID string `json:"deliberation_id"`
	Key            string `json:"key"`
	Attempt        int    `json:"attempt"`
	Stage          int    `json:"stage"`
	ReviewerID     string `json:"reviewer_id"`
	Error          string `json:"error"`
	Retryable      bool   `json:"retryable"`
}

// Ranked is a final proposal with its place in the ranking.
type Ranked struct {
	Rank   int                `json:"rank"`
	Score  float64            `json:"score"`
	Scores map[string]float64 `json:"scores"`
	// Scored is false for a proposal no peer reviewed (ranked last).
	Scored    bool       `json:"scored"`
	Proposal  Proposal   `json:"proposal"`
	Critiques []Critique `json:"critiques"`
	// ScoreSpread is the highest overall score of Critiques less the
	// lowest (added within v1: absent for an unscored proposal and from
	// older producers).
	ScoreSpread *float64 `json:"score_spread,omitempty"`
}

// Failure records an agent that exhausted its retries.
type Failure struct {
	AgentID string `json:"agent_id"`
	Stage   int    `json:"stage"`
	Reason  string `json:"reason"`
}

// Completed is the data of deliberation.completed.v1.
type Completed struct {
	DeliberationID string `json:"deliberation_id"`
	TaskID         string `json:"task_id"`
	Kind           string `json:"kind"`
	Backend        string `json:"backend"`
	// Status is always "completed".
	Status  string   `json:"status"`
	Winner  string   `json:"winner"`
	Ranking []Ranked `json:"ranking"`
	// History holds the proposals of the stages before the final one.
	History []Proposal `json:"history"`
	// Reviews holds the critiques of the stages before the final one.
	Reviews    []Critique        `json:"reviews"`
	Failures   []Failure         `json:"failures"`
	Usage      Usage             `json:"usage"`
	DurationMS int64             `json:"duration_ms"`
	StartedAt  time.Time         `json:"started_at"`
	FinishedAt time.Time         `json:"finished_at"`
	Metadata   map[string]string `json:"metadata"`
	// Output is the winner's content parsed as JSON, for the structured kinds
	// (task_extraction, task_derivation).
	Output json.RawMessage `json:"output,omitempty"`
	// Calls is how many calls were issued, retries included (added within
	// v1: always written, optional on read).
	Calls int `json:"calls" schema:"optional"`
	// Stopped is budget_exceeded when a budget ended the rounds early
	// (the last critiqued stage is ranked); absent otherwise.
	Stopped string `json:"stopped,omitempty"`
	// PromptCache measures the prefix cache on the deliberation's calls
	// (added within v1: always written, optional on read).
	PromptCache PromptCache `json:"prompt_cache" schema:"optional"`
	// Protocol is the protocol that ran; RoundsRun the rounds after the
	// first answers (added within v1: always written, optional on read).
	Protocol  string `json:"protocol" schema:"optional"`
	RoundsRun int    `json:"rounds_run" schema:"optional"`
	// Votes is the tally of the final answers (protocols vote and debate).
	Votes []Vote `json:"votes,omitempty"`
	// Final is the judge's answer (protocol judge, or synthesize).
	Final *Final `json:"final,omitempty"`
	// Aggregation is how the scores were made from the critiques
	// (added within v1: always written, optional on read).
	Aggregation string `json:"aggregation" schema:"optional"`
	// Agreement is Kendall's W of the final review's rankings, in [0,1];
	// absent when fewer than 2 reviewers ranked every other proposal.
	Agreement *float64 `json:"agreement,omitempty"`
}

// PromptCache is council.PromptCache on the wire: the share of prompt
// tokens the LLM server reported as cached, and the share of prompt bytes
// in a prefix shared with an earlier call of the deliberation.
type PromptCache struct {
	CachedTokenShare  float64 `json:"cached_token_share"`
	SharedPrefixShare float64 `json:"shared_prefix_share"`
}

// Failed is the data of deliberation.failed.v1.
type Failed struct {
	DeliberationID string `json:"deliberation_id"`
	TaskID         string `json:"task_id"`
	Kind           string `json:"kind"`
	Backend        string `json:"backend"`
	// Status is always "failed".
	Status     string            `json:"status"`
	Reason     string            `json:"reason"`
	Failures   []Failure         `json:"failures"`
	Usage      Usage             `json:"usage"`
	DurationMS int64             `json:"duration_ms"`
	StartedAt  time.Time         `json:"started_at"`
	FinishedAt time.Time         `json:"finished_at"`
	Metadata   map[string]string `json:"metadata"`
	// Calls is how many calls were issued, retries included (added within
	// v1: always written, optional on read).
	Calls int `json:"calls" schema:"optional"`
}

// Tick is the data of sweep.tick.v1.
type Tick struct {
	// At is the time the sweep should consider as now; zero means the event time.
	At time.Time `json:"at,omitzero"`
}
