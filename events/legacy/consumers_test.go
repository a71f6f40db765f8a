package legacy_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"council.dev/events/legacy"
	"council.dev/events/legacy/legacytest"
	"council.dev/shared/council"
)

// consumer returns the old consumer named name (legacytest.Consumers).
func consumer(t *testing.T, name string) legacytest.Consumer {
	t.Helper()
	for _, c := range legacytest.Consumers() {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no consumer %q", name)
	return legacytest.Consumer{}
}

// readAll returns what c reads of the messages of d on its subjects,
// failing the test on any message c would drop or nak.
func readAll(t *testing.T, c legacytest.Consumer, d *council.Deliberation) []legacytest.Reading {
	t.Helper()
	msgs, err := legacy.Messages(d, "council", pub)
	if err != nil {
		t.Fatal(err)
	}
	var out []legacytest.Reading
	for _, m := range msgs {
		if !c.Subscribed(m.Subject) {
			continue
		}
		r, err := c.Read(m.Subject, m.Body)
		if err != nil {
			t.Errorf("%s drops or naks %s on %s: %v", c.Name, m.ID, m.Subject, err)
			continue
		}
		out = append(out, r)
	}
	return out
}

func withTrigger(task council.Task) council.Task {
	task.Constraints.Metadata["trigger"] = "deliberations_done"
	return task
}

// TestConsumers checks every old consumer of docs/legacy-consumers.md
// against the messages of the deliberations it receives: each reads every
// message on its subjects, and gets what it needs.
func TestConsumers(t *testing.T) {
	partial := func(t *testing.T) *council.Deliberation {
		return deliberate(t, deliberationTask(), script{
			fail: map[string]bool{"qa-1": true}, score: map[string]float64{"dev-1": 0.6, "arch-1": 0.8},
		})
	}
	ignore := cmp.FilterPath(func(p cmp.Path) bool {
		f := p.Last().String()
		return f == ".Text" || f == ".CorrelationID"
	}, cmp.Ignore())
	for _, tc := range []struct {
		consumer string
		d        func(t *testing.T) *council.Deliberation
		want     []legacytest.Reading
	}{
		{
			consumer: "orchestrator DeliberationResultCollector", d: partial,
			want: []legacytest.Reading{
				{TaskID: "task-42", AgentID: "arch-1", Role: "ARCHITECT", NumAgents: 3},
				{TaskID: "task-42", AgentID: "dev-1", Role: "DEV", NumAgents: 3},
				{TaskID: "task-42", AgentID: "qa-1", Role: "QA", NumAgents: 3, Failed: true},
			},
		},
		{
			consumer: "orchestrator agent_response_consumer (v3 pull)", d: partial,
			want: []legacytest.Reading{
				{TaskID: "task-42", AgentID: "arch-1", Role: "ARCHITECT", StoryID: "story-7"},
				{TaskID: "task-42", AgentID: "dev-1", Role: "DEV", StoryID: "story-7"},
				{TaskID: "task-42", AgentID: "qa-1", Role: "QA", StoryID: "story-7", Failed: true},
			},
		},
		{
			consumer: "orchestrator agent_response_consumer (v3 pull)",
			d:        func(t *testing.T) *council.Deliberation { return deliberate(t, backlogTask(), script{timeout: true}) },
			want: []legacytest.Reading{
				{TaskID: "ceremony-BRC-1:story-ST-1:role-ARCHITECT", AgentID: "agent-architect-001", Role: "ARCHITECT", StoryID: "ST-1", Failed: true},
				{TaskID: "ceremony-BRC-1:story-ST-1:role-ARCHITECT", AgentID: "agent-architect-002", Role: "ARCHITECT", StoryID: "ST-1", Failed: true},
				{TaskID: "ceremony-BRC-1:story-ST-1:role-ARCHITECT", AgentID: "agent-architect-003", Role: "ARCHITECT", StoryID: "ST-1", Failed: true},
			},
		},
		{
			consumer: "backlog-review-processor BacklogReviewResultConsumer",
			d: func(t *testing.T) *council.Deliberation {
				return deliberate(t, backlogTask(), script{score: map[string]float64{"agent-architect-002": 0.9}})
			},
			want: []legacytest.Reading{
				{TaskID: "ceremony-BRC-1:story-ST-1:role-ARCHITECT", AgentID: "agent-architect-002", Role: "ARCHITECT", StoryID: "ST-1", Extra: map[string]string{"ceremony_id": "BRC-1"}},
				{TaskID: "ceremony-BRC-1:story-ST-1:role-ARCHITECT", AgentID: "agent-architect-001", Role: "ARCHITECT", StoryID: "ST-1", Extra: map[string]string{"ceremony_id": "BRC-1"}},
				{TaskID: "ceremony-BRC-1:story-ST-1:role-ARCHITECT", AgentID: "agent-architect-003", Role: "ARCHITECT", StoryID: "ST-1", Extra: map[string]string{"ceremony_id": "BRC-1"}},
			},
		},
		{
			consumer: "backlog-review-processor TaskExtractionResultConsumer",
			d: func(t *testing.T) *council.Deliberation {
				return deliberate(t, extractionTask(), script{content: extracted})
			},
			want: []legacytest.Reading{{
				TaskID: "ceremony-BRC-1:story-ST-1:task-extraction", AgentID: "agent-task-extractor-001", StoryID: "ST-1",
				Extra: map[string]string{"ceremony_id": "BRC-1", "tasks": "2"},
			}},
		},
		{
			consumer: "planning-ceremony-processor",
			d: func(t *testing.T) *council.Deliberation {
				return deliberate(t, withTrigger(deliberationTask()), script{score: map[string]float64{"dev-1": 0.9, "arch-1": 0.8, "qa-1": 0.5}})
			},
			want: []legacytest.Reading{
				{TaskID: "task-42", AgentID: "dev-1", Extra: map[string]string{"trigger": "deliberations_done"}},
				{TaskID: "task-42", AgentID: "arch-1", Extra: map[string]string{"trigger": "deliberations_done"}},
				{TaskID: "task-42", AgentID: "qa-1", Extra: map[string]string{"trigger": "deliberations_done"}},
			},
		},
		{
			consumer: "planning task-derivation consumer",
			d: func(t *testing.T) *council.Deliberation {
				return deliberate(t, derivationTask(), script{content: `{"tasks": []}`})
			},
			want: []legacytest.Reading{{
				TaskID: "derive-plan-42", AgentID: "task-deriver-001", StoryID: "ST-1", Role: "SYSTEM",
				Extra: map[string]string{"plan_id": "plan-42"},
			}},
		},
		{
			consumer: "task-derivation service TaskDerivationResultConsumer",
			d: func(t *testing.T) *council.Deliberation {
				return deliberate(t, derivationTask(), script{content: `{"tasks": []}`})
			},
			want: []legacytest.Reading{{
				TaskID: "derive-plan-42", AgentID: "task-deriver-001", StoryID: "ST-1", Extra: map[string]string{"plan_id": "plan-42"},
			}},
		},
	} {
		t.Run(tc.consumer, func(t *testing.T) {
			c := consumer(t, tc.consumer)
			d := tc.d(t)
			got := readAll(t, c, d)
			if diff := cmp.Diff(tc.want, got, ignore); diff != "" {
				t.Errorf("%s reads (-want +got):\n%s", c.Name, diff)
			}
			for _, r := range got {
				if r.CorrelationID != "" && r.CorrelationID != d.ID {
					t.Errorf("%s: correlation_id %q, want the deliberation id %s", c.Name, r.CorrelationID, d.ID)
				}
				if !r.Failed && r.Text == "" && tc.consumer != "backlog-review-processor TaskExtractionResultConsumer" &&
					!strings.HasPrefix(tc.consumer, "orchestrator") {
					t.Errorf("%s: no answer text read", c.Name)
				}
			}
		})
	}
}

// TestCollectorCompletes runs the Orchestrator's collector over the
// messages of deliberations: it completes each task once num_agents
// responses arrived, failed when every agent failed.
func TestCollectorCompletes(t *testing.T) {
	c := consumer(t, "orchestrator DeliberationResultCollector")
	for _, tc := range []struct {
		name       string
		d          func(t *testing.T) *council.Deliberation
		allFailed  bool
		successful int
	}{
		{"partial failure", func(t *testing.T) *council.Deliberation {
			return deliberate(t, deliberationTask(), script{fail: map[string]bool{"qa-1": true}})
		}, false, 2},
		{"all failed", func(t *testing.T) *council.Deliberation {
			return deliberate(t, deliberationTask(), script{fail: map[string]bool{"dev-1": true, "qa-1": true, "arch-1": true}})
		}, true, 0},
		{"task derivation", func(t *testing.T) *council.Deliberation {
			return deliberate(t, derivationTask(), script{content: `{"tasks": []}`})
		}, false, 1},
	} {
		rs := readAll(t, c, tc.d(t))
		if len(rs) == 0 {
			t.Fatalf("%s: the collector received nothing", tc.name)
		}
		expected, ok, failed := rs[0].NumAgents, 0, 0
		for _, r := range rs {
			if r.Failed {
				failed++
			} else {
				ok++
			}
		}
		if ok+failed < expected || ok != tc.successful || (ok == 0) != tc.allFailed {
			t.Errorf("%s: %d completed + %d failed of %d expected: the collector does not complete as it should", tc.name, ok, failed, expected)
		}
	}
}

// TestConsumersRejectTheOldShape checks the consumers are no formality:
// the messages without what each consumer needs (the shape before the
// top-level fields, result.proposal and trigger) are refused.
func TestConsumersRejectTheOldShape(t *testing.T) {
	strip := func(body []byte, top []string, payload []string) []byte {
		var env map[string]any
		if err := json.Unmarshal(body, &env); err != nil {
			t.Fatal(err)
		}
		for _, k := range top {
			delete(env, k)
		}
		p, _ := env["payload"].(map[string]any)
		for _, k := range payload {
			delete(p, k)
		}
		b, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	partial, err := legacy.Messages(deliberate(t, deliberationTask(), script{fail: map[string]bool{"qa-1": true}}), "council", pub)
	if err != nil {
		t.Fatal(err)
	}
	derived, err := legacy.Messages(deliberate(t, derivationTask(), script{content: `{"tasks": []}`}), "council", pub)
	if err != nil {
		t.Fatal(err)
	}
	completed, failed := partial[0], partial[len(partial)-1]
	for _, tc := range []struct {
		consumer string
		msg      legacy.Message
		top      []string
		payload  []string
		want     string
	}{
		{"orchestrator DeliberationResultCollector", completed, []string{"task_id", "agent_id"}, nil, "missing task_id or agent_id"},
		{"orchestrator DeliberationResultCollector", completed, []string{"num_agents"}, nil, "missing num_agents"},
		{"orchestrator agent_response_consumer (v3 pull)", completed, []string{"role"}, nil, "missing role"},
		{"orchestrator agent_response_consumer (v3 pull)", failed, []string{"story_id"}, nil, "missing story_id"},
		{"planning task-derivation consumer", derived[0], nil, []string{"result"}, "result.proposal"},
		{"planning task-derivation consumer", derived[0], nil, []string{"plan_id"}, "missing plan_id"},
		{"planning-ceremony-processor", completed, nil, nil, "missing trigger"},
		{"backlog-review-processor BacklogReviewResultConsumer", completed, []string{"correlation_id"}, nil, "missing correlation_id"},
	} {
		c := consumer(t, tc.consumer)
		_, err := c.Read(tc.msg.Subject, strip(tc.msg.Body, tc.top, tc.payload))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s without %v %v: %v; want an error naming %q", tc.consumer, tc.top, tc.payload, err, tc.want)
		}
	}
}
