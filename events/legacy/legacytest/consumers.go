// Package legacytest holds the old swe-ai-fleet consumers of
// agent.response.* as executable requirements: each Consumer reads a
// message the way docs/legacy-consumers.md says that consumer does, and
// returns what it would take from it, or why it would drop or nak it. The
// contract tests of events/legacy run them over Messages, and the
// end-to-end tests over what the stack really publishes.
package legacytest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"council.dev/events/legacy"
)

// Reading is what a consumer takes from one message.
type Reading struct {
	TaskID, AgentID, Role, StoryID string
	// CorrelationID is the envelope's (consumers that use the envelope).
	CorrelationID string
	// NumAgents is the expected agents (the collector), 0 when not read.
	NumAgents int
	// Text is the agent's answer where the consumer reads one.
	Text string
	// Failed is true for a failure the consumer handles as such.
	Failed bool
	// Extra are consumer-specific values (ceremony, plan, trigger, tasks).
	Extra map[string]string
}

// Consumer is one old consumer: the subjects it subscribes to (exact: NATS
// does not deliver agent.response.completed.x to agent.response.completed)
// and how it reads a message.
type Consumer struct {
	Name     string
	Subjects []string
	// Read returns what the consumer takes from a message on subject, or
	// an error saying why it would drop or nak it.
	Read func(subject string, body []byte) (Reading, error)
}

// Consumers returns every old consumer of docs/legacy-consumers.md.
func Consumers() []Consumer {
	return []Consumer{
		{"orchestrator DeliberationResultCollector", []string{legacy.SubjectCompleted, legacy.SubjectFailed}, readCollector},
		{"orchestrator agent_response_consumer (v3 pull)", []string{legacy.SubjectCompleted, legacy.SubjectFailed}, readAgentResponse},
		{"backlog-review-processor BacklogReviewResultConsumer", []string{legacy.SubjectCompletedBacklogReview}, readBacklogReview},
		{"backlog-review-processor TaskExtractionResultConsumer", []string{legacy.SubjectCompletedTaskExtraction}, readTaskExtraction},
		{"planning-ceremony-processor", []string{legacy.SubjectCompleted}, readCeremony},
		{"planning task-derivation consumer", []string{legacy.SubjectCompleted}, readPlanningDerivation},
		{"task-derivation service TaskDerivationResultConsumer", []string{legacy.SubjectCompleted}, readDerivationService},
	}
}

// Subscribed reports whether c receives messages on subject.
func (c Consumer) Subscribed(subject string) bool {
	for _, s := range c.Subjects {
		if s == subject {
			return true
		}
	}
	return false
}

type object = map[string]any

func parse(body []byte) (object, error) {
	var o object
	if err := json.Unmarshal(body, &o); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	return o, nil
}

// str returns o[key] as a non-empty string, or an error naming key.
func str(o object, key string) (string, error) {
	v, ok := o[key].(string)
	if !ok || v == "" {
		return "", fmt.Errorf("missing %s", key)
	}
	return v, nil
}

func optStr(o object, key string) string {
	v, _ := o[key].(string)
	return v
}

func obj(o object, key string) object {
	v, _ := o[key].(map[string]any)
	return v
}

// envelope is parse_required_envelope (core/shared/events): strict, no
// legacy fallback: event_type, payload (an object), idempotency_key,
// correlation_id, timestamp and producer are required; other keys are ignored.
func envelope(body []byte) (object, object, error) {
	o, err := parse(body)
	if err != nil {
		return nil, nil, err
	}
	for _, k := range []string{"event_type", "idempotency_key", "correlation_id", "timestamp", "producer"} {
		if _, err := str(o, k); err != nil {
			return nil, nil, fmt.Errorf("envelope: %w", err)
		}
	}
	p := obj(o, "payload")
	if p == nil {
		return nil, nil, errors.New("envelope: missing payload")
	}
	if m, ok := o["metadata"]; ok && m != nil {
		if _, ok := m.(map[string]any); !ok {
			return nil, nil, errors.New("envelope: metadata is not an object")
		}
	}
	return o, p, nil
}

// readCollector: the pre-envelope DeliberationResultCollector reads the
// message itself (json.loads) per task_id: task_id and agent_id are
// required ("missing task_id or agent_id": acked and ignored), num_agents
// sets the expected count, role and timestamp go into the results; a
// failure's error into failed_agents.
func readCollector(subject string, body []byte) (Reading, error) {
	o, err := parse(body)
	if err != nil {
		return Reading{}, err
	}
	taskID, err1 := str(o, "task_id")
	agentID, err2 := str(o, "agent_id")
	if err1 != nil || err2 != nil {
		return Reading{}, errors.New("missing task_id or agent_id")
	}
	n, ok := o["num_agents"].(float64)
	if !ok || n < 1 || n != float64(int(n)) {
		return Reading{}, errors.New("missing num_agents: the collector never knows when the task is complete")
	}
	r := Reading{TaskID: taskID, AgentID: agentID, Role: optStr(o, "role"), NumAgents: int(n), Failed: subject == legacy.SubjectFailed}
	if _, err := str(o, "timestamp"); err != nil {
		return Reading{}, err
	}
	if r.Failed {
		if _, err := str(o, "error"); err != nil {
			return Reading{}, err
		}
	} else if r.Role == "" {
		return Reading{}, errors.New("missing role")
	}
	return r, nil
}

// readAgentResponse: the Orchestrator's v3 pull consumer parses the
// message itself: AgentCompletedResponse.from_dict requires task_id,
// agent_id, role, timestamp at the top level and reads duration_ms and
// checks_passed from output (0 / true when absent); story_id from the
// ":story-" segment of the task id or the top level. A failure needs
// task_id, agent_id, error and story_id. A parse error naks (forever).
func readAgentResponse(subject string, body []byte) (Reading, error) {
	o, err := parse(body)
	if err != nil {
		return Reading{}, err
	}
	var r Reading
	need := []string{"task_id", "agent_id", "role", "timestamp"}
	if subject == legacy.SubjectFailed {
		need = []string{"task_id", "agent_id", "error", "story_id", "timestamp"}
		r.Failed = true
	}
	for _, k := range need {
		if _, err := str(o, k); err != nil {
			return Reading{}, err
		}
	}
	r.TaskID, r.AgentID, r.Role, r.StoryID = optStr(o, "task_id"), optStr(o, "agent_id"), optStr(o, "role"), optStr(o, "story_id")
	if i := strings.Index(r.TaskID, ":story-"); i >= 0 && r.StoryID == "" {
		r.StoryID = strings.SplitN(r.TaskID[i+len(":story-"):], ":", 2)[0]
	}
	if out := obj(o, "output"); out != nil {
		if _, ok := out["duration_ms"].(float64); !ok {
			return Reading{}, errors.New("output.duration_ms is not a number")
		}
		if v, ok := out["checks_passed"]; ok {
			if _, ok := v.(bool); !ok {
				return Reading{}, errors.New("output.checks_passed is not a boolean")
			}
		}
	}
	return r, nil
}

// proposalText is what the consumers take as the answer: proposal.content,
// or proposal when it is a string.
func proposalText(p object) string {
	switch v := p["proposal"].(type) {
	case string:
		return v
	case map[string]any:
		s, _ := v["content"].(string)
		return s
	}
	return ""
}

// readBacklogReview: the backlog-review processor parses the envelope
// strictly and splits payload.task_id ceremony-{id}:story-{id}:role-{ROLE}
// into its 3 parts (else nak), then accumulates the agent's proposal per
// story and role.
func readBacklogReview(_ string, body []byte) (Reading, error) {
	env, p, err := envelope(body)
	if err != nil {
		return Reading{}, err
	}
	taskID, err := str(p, "task_id")
	if err != nil {
		return Reading{}, err
	}
	parts := strings.Split(taskID, ":")
	if len(parts) != 3 || !strings.HasPrefix(parts[0], "ceremony-") || !strings.HasPrefix(parts[1], "story-") || !strings.HasPrefix(parts[2], "role-") {
		return Reading{}, fmt.Errorf("task_id %q is not ceremony-{id}:story-{id}:role-{ROLE}", taskID)
	}
	agentID, err := str(p, "agent_id")
	if err != nil {
		return Reading{}, err
	}
	text := proposalText(p)
	if text == "" {
		return Reading{}, errors.New("no proposal")
	}
	return Reading{
		TaskID: taskID, AgentID: agentID, Role: strings.TrimPrefix(parts[2], "role-"), StoryID: strings.TrimPrefix(parts[1], "story-"),
		CorrelationID: optStr(env, "correlation_id"), Text: text,
		Extra: map[string]string{"ceremony_id": strings.TrimPrefix(parts[0], "ceremony-")},
	}, nil
}

// readTaskExtraction: the backlog-review processor's extraction consumer
// parses the envelope strictly and reads the canonical extraction event:
// payload.tasks (a list), story_id and ceremony_id (to find the ceremony).
func readTaskExtraction(_ string, body []byte) (Reading, error) {
	env, p, err := envelope(body)
	if err != nil {
		return Reading{}, err
	}
	tasks, ok := p["tasks"].([]any)
	if !ok {
		return Reading{}, errors.New("payload.tasks is not a list")
	}
	story, err := str(p, "story_id")
	if err != nil {
		return Reading{}, err
	}
	ceremony, err := str(p, "ceremony_id")
	if err != nil {
		return Reading{}, err
	}
	return Reading{
		TaskID: optStr(p, "task_id"), AgentID: optStr(p, "agent_id"), StoryID: story, CorrelationID: optStr(env, "correlation_id"),
		Extra: map[string]string{"ceremony_id": ceremony, "tasks": fmt.Sprint(len(tasks))},
	}, nil
}

// readCeremony: the planning-ceremony processor parses the envelope
// strictly and advances the ceremony whose stored correlation id (the
// deliberation id the submission answered) is the envelope's correlation_id,
// when the payload names the step's trigger.
func readCeremony(_ string, body []byte) (Reading, error) {
	env, p, err := envelope(body)
	if err != nil {
		return Reading{}, err
	}
	corr, err := str(env, "correlation_id")
	if err != nil {
		return Reading{}, err
	}
	trigger, err := str(p, "trigger")
	if err != nil {
		return Reading{}, err
	}
	return Reading{
		TaskID: optStr(p, "task_id"), AgentID: optStr(p, "agent_id"), CorrelationID: corr, Text: proposalText(p),
		Extra: map[string]string{"trigger": trigger},
	}, nil
}

// readPlanningDerivation: the planning service's task-derivation consumer
// parses the envelope and needs story_id, role, plan_id and
// result.proposal (a string) in the payload (else nak).
func readPlanningDerivation(_ string, body []byte) (Reading, error) {
	env, p, err := envelope(body)
	if err != nil {
		return Reading{}, err
	}
	var vals [3]string
	for i, k := range []string{"story_id", "role", "plan_id"} {
		if vals[i], err = str(p, k); err != nil {
			return Reading{}, err
		}
	}
	res := obj(p, "result")
	text, ok := res["proposal"].(string)
	if res == nil || !ok {
		return Reading{}, errors.New("missing result.proposal (a string)")
	}
	return Reading{
		TaskID: optStr(p, "task_id"), AgentID: optStr(p, "agent_id"), StoryID: vals[0], Role: vals[1],
		CorrelationID: optStr(env, "correlation_id"), Text: text, Extra: map[string]string{"plan_id": vals[2]},
	}, nil
}

// readDerivationService: the task-derivation service's result consumer
// reads the payload (inside the envelope, or the message itself), keeps
// task ids starting with "derive-", takes plan_id and story_id from the
// top level, constraints or constraints.metadata, and the text from
// result.proposal or proposal (content or string).
func readDerivationService(_ string, body []byte) (Reading, error) {
	o, err := parse(body)
	if err != nil {
		return Reading{}, err
	}
	p := o
	if inner := obj(o, "payload"); inner != nil {
		p = inner
	}
	taskID, err := str(p, "task_id")
	if err != nil {
		return Reading{}, err
	}
	if !strings.HasPrefix(taskID, "derive-") {
		return Reading{}, fmt.Errorf("task_id %q is not a derivation (derive-…): ignored", taskID)
	}
	lookup := func(key string) string {
		if v := optStr(p, key); v != "" {
			return v
		}
		c := obj(p, "constraints")
		if v := optStr(c, key); v != "" {
			return v
		}
		return optStr(obj(c, "metadata"), key)
	}
	plan, story := lookup("plan_id"), lookup("story_id")
	if plan == "" || story == "" {
		return Reading{}, fmt.Errorf("plan_id %q, story_id %q: both are required", plan, story)
	}
	text := ""
	if res := obj(p, "result"); res != nil {
		text, _ = res["proposal"].(string)
	}
	if text == "" {
		text = proposalText(p)
	}
	if text == "" {
		return Reading{}, errors.New("no text in result.proposal or proposal")
	}
	return Reading{TaskID: taskID, AgentID: optStr(p, "agent_id"), StoryID: story, Text: text, Extra: map[string]string{"plan_id": plan}}, nil
}
