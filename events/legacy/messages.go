package legacy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"council.dev/shared/council"
)

// Subjects of the old fleet (ORIGINAL.md §5.2).
const (
	// SubjectCompleted carries a completed agent response of any task type
	// but the two below.
	SubjectCompleted = "agent.response.completed"
	// SubjectCompletedBacklogReview carries the responses of a backlog
	// review (task_type BACKLOG_REVIEW_ROLE).
	SubjectCompletedBacklogReview = "agent.response.completed.backlog-review.role"
	// SubjectCompletedTaskExtraction carries the response of a task
	// extraction (task_type TASK_EXTRACTION).
	SubjectCompletedTaskExtraction = "agent.response.completed.task-extraction"
	// SubjectFailed carries a failed agent response.
	SubjectFailed = "agent.response.failed"
	// StreamSubjects is what the AGENT_RESPONSES stream captures.
	StreamSubjects = "agent.response.>"
)

// Event types of the envelope: every completed subject has the event type
// agent.response.completed, as in the old publisher.
const (
	EventCompleted = "agent.response.completed"
	EventFailed    = "agent.response.failed"
)

// Values of Constraints.Metadata["task_type"] that route a completed
// response to its own subject.
const (
	TaskTypeBacklogReview  = "BACKLOG_REVIEW_ROLE"
	TaskTypeTaskExtraction = "TASK_EXTRACTION"
	// TaskTypeTaskDerivation marks a task derivation: its completed
	// response also carries story_id, plan_id and result.proposal.
	TaskTypeTaskDerivation = "TASK_DERIVATION"
	// taskTypeBacklogReviewBare is what some callers write for a review.
	taskTypeBacklogReviewBare = "BACKLOG_REVIEW"
)

// Values of error_type in agent.response.failed.
const (
	// ErrorTypeAgent: the agent exhausted its retries; the deliberation went
	// on with the others.
	ErrorTypeAgent = "AgentFailure"
	// ErrorTypeDeliberation: the whole deliberation failed (every agent
	// failed, timeout_seconds passed, the Ray job could not deliver).
	ErrorTypeDeliberation = "DeliberationFailed"
)

// timeLayout is Python's datetime.isoformat() of an aware UTC time, the
// form the old consumers parse ("2025-12-07T11:16:07.285113+00:00").
const timeLayout = "2006-01-02T15:04:05.000000-07:00"

// Message is one message for the old subjects.
type Message struct {
	Subject string
	// ID is the envelope's idempotency key, published as Nats-Msg-Id.
	ID string
	// Body is the EventEnvelope as JSON.
	Body []byte
}

// IdempotencyKey is the idempotency key of the eventType message of agent
// in deliberation: the hex SHA-256 of "<eventType>:<deliberation>:<agent>",
// which is what the fleet's create_event_envelope computes with entity_id
// the deliberation id and operation the agent id. It is deterministic (a
// re-publish has the same key) and distinct per agent (B12).
func IdempotencyKey(eventType, deliberation, agent string) string {
	sum := sha256.Sum256([]byte(eventType + ":" + deliberation + ":" + agent))
	return hex.EncodeToString(sum[:])
}

// CompletedSubject returns the subject of the completed responses of t:
// by Constraints.Metadata["task_type"] as the old publisher routed, but
// in any case and with '-' or '_' (BACKLOG_REVIEW_ROLE, backlog_review,
// backlog-review; TASK_EXTRACTION, task_extraction, task-extraction;
// anything else generic); without a task_type, by kind (backlog_review,
// task_extraction; the others generic).
func CompletedSubject(t council.Task) string {
	switch TaskType(t) {
	case TaskTypeBacklogReview, taskTypeBacklogReviewBare:
		return SubjectCompletedBacklogReview
	case TaskTypeTaskExtraction:
		return SubjectCompletedTaskExtraction
	case "":
		switch t.Kind {
		case council.KindBacklogReview:
			return SubjectCompletedBacklogReview
		case council.KindTaskExtraction:
			return SubjectCompletedTaskExtraction
		}
	}
	return SubjectCompleted
}

// TaskType returns t's metadata task_type normalised: upper case, '-' as
// '_' ("backlog-review" → "BACKLOG_REVIEW"); "" when absent.
func TaskType(t council.Task) string {
	return strings.ReplaceAll(strings.ToUpper(strings.TrimSpace(t.Constraints.Metadata["task_type"])), "-", "_")
}

// isDerivation reports whether t is a task derivation: by task_type
// TASK_DERIVATION, or by kind when there is no task_type.
func isDerivation(t council.Task) bool {
	if tt := TaskType(t); tt != "" {
		return tt == TaskTypeTaskDerivation
	}
	return t.Kind == council.KindTaskDerivation
}

// StoryID returns the story of t: its story_id, else metadata story_id,
// else the story-{id} segment of a ceremony task id; "" when none.
func StoryID(t council.Task) string {
	if t.Constraints.StoryID != "" {
		return t.Constraints.StoryID
	}
	if v := t.Constraints.Metadata["story_id"]; v != "" {
		return v
	}
	for part := range strings.SplitSeq(t.ID, ":") {
		if v, ok := strings.CutPrefix(part, "story-"); ok && v != "" {
			return v
		}
	}
	return ""
}

// envelope is the fleet's EventEnvelope (ORIGINAL.md §2.4) plus, at the
// top level, the fields the pre-envelope consumers read there (the
// Orchestrator's collector and pull consumer): task_id, agent_id, role,
// story_id, num_agents, output, and error, error_type on failures; its
// own timestamp serves them too. The strict envelope parser ignores them.
type envelope struct {
	EventType      string            `json:"event_type"`
	Payload        any               `json:"payload"`
	IdempotencyKey string            `json:"idempotency_key"`
	CorrelationID  string            `json:"correlation_id"`
	Timestamp      string            `json:"timestamp"`
	Producer       string            `json:"producer"`
	Metadata       map[string]string `json:"metadata"`

	TaskID    string  `json:"task_id"`
	AgentID   string  `json:"agent_id"`
	Role      string  `json:"role"`
	StoryID   string  `json:"story_id"`
	NumAgents int     `json:"num_agents"`
	Output    *output `json:"output,omitempty"`
	Error     string  `json:"error,omitempty"`
	ErrorType string  `json:"error_type,omitempty"`
}

// top is what a message repeats at the top level of its envelope.
type top struct {
	agentID, role    string
	output           *output
	error, errorType string
}

// output is the top-level output the Orchestrator's AgentCompletedResponse
// reads duration_ms and checks_passed from.
type output struct {
	DurationMS int64 `json:"duration_ms"`
	// ChecksPassed is always true: council runs no checks of its own
	// (the old consumers' default when absent).
	ChecksPassed bool `json:"checks_passed"`
}

// completed is the payload of agent.response.completed: the old
// AgentResult fields plus council's score, rank and deliberation id.
type completed struct {
	TaskID      string      `json:"task_id"`
	AgentID     string      `json:"agent_id"`
	Role        string      `json:"role"`
	Status      string      `json:"status"`
	Success     bool        `json:"success"`
	NumAgents   int         `json:"num_agents"`
	Proposal    proposal    `json:"proposal"`
	Model       string      `json:"model"`
	DurationMS  int64       `json:"duration_ms"`
	Timestamp   string      `json:"timestamp"`
	Constraints constraints `json:"constraints"`

	Score          float64 `json:"score"`
	Scored         bool    `json:"scored"`
	Rank           int     `json:"rank"`
	DeliberationID string  `json:"deliberation_id"`
	// Trigger is the caller's metadata trigger, when it sent one (the
	// planning-ceremony processor advances a ceremony by it).
	Trigger string `json:"trigger,omitempty"`
}

// derivation is the payload of a task derivation's agent.response.completed:
// the completed fields plus what the planning service's task-derivation
// consumer reads (story_id, plan_id, result.proposal as a string).
type derivation struct {
	completed
	StoryID string           `json:"story_id"`
	PlanID  string           `json:"plan_id"`
	Result  derivationResult `json:"result"`
}

type derivationResult struct {
	Proposal string `json:"proposal"`
}

// extraction is the payload of agent.response.completed.task-extraction:
// the completed fields plus those of the fleet's canonical extraction event.
type extraction struct {
	completed
	Tasks       []json.RawMessage `json:"tasks"`
	StoryID     *string           `json:"story_id"`
	CeremonyID  *string           `json:"ceremony_id"`
	ValidatedAt string            `json:"validated_at"`
}

type proposal struct {
	Content    string `json:"content"`
	AuthorID   string `json:"author_id"`
	AuthorRole string `json:"author_role"`
	Model      string `json:"model"`
	Tokens     int    `json:"tokens"`
	Reasoning  string `json:"reasoning,omitempty"`
}

type constraints struct {
	StoryID    string         `json:"story_id"`
	PlanID     string         `json:"plan_id"`
	Timeout    int            `json:"timeout"`
	MaxRetries int            `json:"max_retries"`
	Metadata   map[string]any `json:"metadata"`
}

// failed is the payload of agent.response.failed.
type failed struct {
	TaskID         string            `json:"task_id"`
	AgentID        string            `json:"agent_id"`
	Role           string            `json:"role"`
	Status         string            `json:"status"`
	Success        bool              `json:"success"`
	Error          string            `json:"error"`
	ErrorType      string            `json:"error_type"`
	StoryID        string            `json:"story_id"`
	NumAgents      int               `json:"num_agents"`
	Timestamp      string            `json:"timestamp"`
	Metadata       map[string]string `json:"metadata"`
	DeliberationID string            `json:"deliberation_id"`
}

// Messages maps the ended deliberation d to the messages the old consumers
// expect, one per agent of the task, in this order: a completed response
// for each ranked final proposal (rank order), then a failed response for
// each agent that failed (or has no final proposal). A failed deliberation
// gives a failed response for every agent, with the deliberation's reason.
// producer names the envelope's producer; now is the envelope's timestamp.
//
// The payload timestamp is when the deliberation ended, duration_ms the
// time from its acceptance to its end, correlation_id its id. It returns an
// error wrapping council.ErrInvalid when d is nil or has not ended.
func Messages(d *council.Deliberation, producer string, now time.Time) ([]Message, error) {
	if d == nil {
		return nil, council.Invalidf("legacy: no deliberation")
	}
	if !d.Status.Terminal() {
		return nil, council.Invalidf("legacy: deliberation %s is %s, not ended", d.ID, d.Status)
	}
	m := mapper{d: d, producer: producer, now: now, ended: d.FinishedAt}
	if m.ended.IsZero() {
		m.ended = now
	}
	var out []Message
	done := map[string]bool{}
	if d.Status == council.StatusCompleted && d.Result != nil {
		for _, rk := range d.Result.Ranking {
			msg, err := m.completed(rk)
			if err != nil {
				return nil, err
			}
			out = append(out, msg)
			done[rk.Proposal.AgentID] = true
		}
		for _, f := range d.Result.Failures {
			if done[f.AgentID] {
				continue
			}
			msg, err := m.failed(f.AgentID, f.Reason, ErrorTypeAgent)
			if err != nil {
				return nil, err
			}
			out = append(out, msg)
			done[f.AgentID] = true
		}
	}
	reason, errorType := d.Reason, ErrorTypeDeliberation
	if d.Status == council.StatusCompleted {
		reason, errorType = "no final proposal", ErrorTypeAgent
	}
	for _, a := range d.Task.Agents {
		if done[a.ID] {
			continue
		}
		msg, err := m.failed(a.ID, reason, errorType)
		if err != nil {
			return nil, err
		}
		out = append(out, msg)
	}
	return out, nil
}

type mapper struct {
	d        *council.Deliberation
	producer string
	now      time.Time
	ended    time.Time
}

func (m mapper) completed(rk council.Ranked) (Message, error) {
	d, p := m.d, rk.Proposal
	role := p.Role
	agent, _ := d.Agent(p.AgentID)
	if role == "" {
		role = agent.Role
	}
	model := p.Model
	if model == "" {
		model = d.Task.ModelFor(agent)
	}
	c := d.Task.Constraints
	body := completed{
		TaskID: d.Task.ID, AgentID: p.AgentID, Role: role, Status: string(council.StatusCompleted), Success: true,
		NumAgents: len(d.Task.Agents),
		Proposal: proposal{
			Content: p.Content, AuthorID: p.AgentID, AuthorRole: role, Model: model,
			Tokens: p.Usage.TotalTokens, Reasoning: p.Reasoning,
		},
		Model: model, DurationMS: m.duration(), Timestamp: m.ended.UTC().Format(timeLayout),
		Constraints: constraints{
			StoryID: c.StoryID, PlanID: c.PlanID, Timeout: int(c.Timeout / time.Second), MaxRetries: c.MaxRetries,
			Metadata: m.metadata(),
		},
		Score: rk.Score, Scored: rk.Scored, Rank: rk.Rank, DeliberationID: d.ID,
		Trigger: c.Metadata["trigger"],
	}
	subject := CompletedSubject(d.Task)
	var payload any = body
	switch {
	case subject == SubjectCompletedTaskExtraction:
		payload = extraction{
			completed: body, Tasks: tasksOf(p.Content),
			StoryID: m.metaValue("story_id", c.StoryID), CeremonyID: m.metaValue("ceremony_id", ""),
			ValidatedAt: m.now.UTC().Format(timeLayout),
		}
	case isDerivation(d.Task):
		payload = derivation{
			completed: body, StoryID: StoryID(d.Task), PlanID: c.PlanID, Result: derivationResult{Proposal: p.Content},
		}
	}
	return m.message(subject, EventCompleted, payload, top{
		agentID: p.AgentID, role: role, output: &output{DurationMS: body.DurationMS, ChecksPassed: true},
	})
}

func (m mapper) failed(agentID, reason, errorType string) (Message, error) {
	d := m.d
	agent, _ := d.Agent(agentID)
	body := failed{
		TaskID: d.Task.ID, AgentID: agentID, Role: agent.Role, Status: string(council.StatusFailed),
		Error: reason, ErrorType: errorType, StoryID: StoryID(d.Task), NumAgents: len(d.Task.Agents),
		Timestamp: m.ended.UTC().Format(timeLayout), Metadata: map[string]string{"task_id": d.Task.ID},
		DeliberationID: d.ID,
	}
	return m.message(SubjectFailed, EventFailed, body, top{agentID: agentID, role: agent.Role, error: reason, errorType: errorType})
}

func (m mapper) message(subject, eventType string, payload any, t top) (Message, error) {
	key := IdempotencyKey(eventType, m.d.ID, t.agentID)
	b, err := json.Marshal(envelope{
		EventType: eventType, Payload: payload, IdempotencyKey: key,
		CorrelationID: m.d.ID, Timestamp: m.now.UTC().Format(timeLayout), Producer: m.producer,
		Metadata: map[string]string{"deliberation_id": m.d.ID, "kind": string(m.d.Task.Kind)},
		TaskID:   m.d.Task.ID, AgentID: t.agentID, Role: t.role, StoryID: StoryID(m.d.Task),
		NumAgents: len(m.d.Task.Agents), Output: t.output, Error: t.error, ErrorType: t.errorType,
	})
	if err != nil {
		return Message{}, fmt.Errorf("legacy: encode %s of %s for %s: %w", eventType, m.d.ID, t.agentID, err)
	}
	return Message{Subject: subject, ID: key, Body: b}, nil
}

func (m mapper) duration() int64 {
	if m.d.StartedAt.IsZero() {
		return 0
	}
	return m.ended.Sub(m.d.StartedAt).Milliseconds()
}

// metadata is the task's metadata as the old executor enriched it: task_id
// and story_id added when absent, num_agents set (a number).
func (m mapper) metadata() map[string]any {
	t := m.d.Task
	out := make(map[string]any, len(t.Constraints.Metadata)+3)
	for k, v := range t.Constraints.Metadata {
		out[k] = v
	}
	if _, ok := out["task_id"]; !ok {
		out["task_id"] = t.ID
	}
	if _, ok := out["story_id"]; !ok && t.Constraints.StoryID != "" {
		out["story_id"] = t.Constraints.StoryID
	}
	out["num_agents"] = len(t.Agents)
	return out
}

// metaValue returns metadata key, or fallback, or nil (JSON null) when both
// are empty.
func (m mapper) metaValue(key, fallback string) *string {
	v := m.d.Task.Constraints.Metadata[key]
	if v == "" {
		v = fallback
	}
	if v == "" {
		return nil
	}
	return &v
}

// tasksOf returns the tasks of a task extraction answer ({"tasks": [...]});
// an answer that is not such JSON gives no tasks, as the old publisher did.
func tasksOf(content string) []json.RawMessage {
	var doc struct {
		Tasks []json.RawMessage `json:"tasks"`
	}
	if err := json.Unmarshal([]byte(content), &doc); err != nil || doc.Tasks == nil {
		return []json.RawMessage{}
	}
	return doc.Tasks
}
