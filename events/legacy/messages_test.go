package legacy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"council.dev/events"
	"council.dev/events/legacy"
	"council.dev/shared/council"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

var (
	t0  = time.Date(2025, 12, 7, 11, 15, 25, 412000000, time.UTC)
	end = t0.Add(41873 * time.Millisecond)
	pub = end.Add(250 * time.Millisecond) // when the messages are published
)

// script says how the agents of a test deliberation answer.
type script struct {
	// fail lists agents whose proposals fail (no retry left).
	fail map[string]bool
	// score is the overall score peers give each author's proposal (0..1);
	// 0.7 when absent.
	score map[string]float64
	// content, when set, is every proposal's content.
	content string
	// timeout ends the deliberation past its deadline after the first stage's proposals.
	timeout bool
	// cancel cancels the deliberation after the first stage's proposals.
	cancel bool
}

// deliberate runs task to its end with s as the agents.
func deliberate(t *testing.T, task council.Task, s script) *council.Deliberation {
	t.Helper()
	d, err := council.New("dlb-0123456789abcdef01234567", task, t0)
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	for !d.Status.Terminal() {
		if len(d.Outbox) == 0 {
			t.Fatalf("deliberation waits with nothing to send (stage %d %s)", d.Stage, d.Phase)
		}
		if s.timeout && d.Phase == council.PhaseCritiquing {
			d.Tick(d.Deadline)
			break
		}
		if s.cancel && d.Phase == council.PhaseCritiquing {
			d.Cancel("the story was dropped", now.Add(time.Second))
			break
		}
		now = now.Add(time.Second)
		for _, k := range append([]string(nil), d.Outbox...) {
			d.Acknowledge(k)
			w := d.Work[k]
			var err error
			switch {
			case w.Kind == council.WorkProposal && s.fail[w.AgentID]:
				_, err = d.RecordFailure(k, w.Attempt, "Failed to call vLLM API: 503", false, now)
			case w.Kind == council.WorkProposal:
				p := council.Proposal{
					AgentID: w.AgentID, Content: s.content, Model: "Qwen/Qwen3-0.6B",
					Usage:    council.Usage{PromptTokens: 1000, CompletionTokens: 431, TotalTokens: 1431},
					Duration: time.Second, Attempt: w.Attempt,
				}
				if p.Content == "" {
					p.Content = "Proposal of " + w.AgentID + ": a token bucket per key in the shared store."
				}
				if w.AgentID == "agent-architect-002" {
					p.Reasoning = "The store is shared, so compare-and-set."
				}
				_, err = d.RecordProposal(k, p, now)
			case w.Kind == council.WorkCritique:
				score, ok := s.score[w.AuthorID]
				if !ok {
					score = 0.7
				}
				scores := map[string]float64{}
				for _, r := range d.Task.Constraints.Rubric {
					scores[r] = score
				}
				_, err = d.RecordCritique(k, council.Critique{
					ReviewerID: w.AgentID, Scores: scores, Overall: score, Model: "Qwen/Qwen3-0.6B", Attempt: w.Attempt,
				}, now)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	d.FinishedAt = end // a round number for the golden files
	return d
}

func backlogTask() council.Task {
	return council.Task{
		ID: "ceremony-BRC-1:story-ST-1:role-ARCHITECT", Description: "Review story ST-1.", Role: "ARCHITECT",
		Kind: council.KindBacklogReview,
		Constraints: council.Constraints{
			StoryID: "ST-1", Timeout: 300 * time.Second, MaxRetries: 3,
			Metadata: map[string]string{
				"task_id": "ceremony-BRC-1:story-ST-1:role-ARCHITECT", "task_type": "BACKLOG_REVIEW_ROLE",
				"story_id": "ST-1", "ceremony_id": "BRC-1",
			},
		},
		Agents: []council.Agent{
			{ID: "agent-architect-001", Role: "ARCHITECT"},
			{ID: "agent-architect-002", Role: "ARCHITECT"},
			{ID: "agent-architect-003", Role: "ARCHITECT"},
		},
		Model: "Qwen/Qwen3-0.6B",
	}
}

func deliberationTask() council.Task {
	return council.Task{
		ID: "task-42", Description: "Design the rate limiter.", Role: "DEV", Kind: council.KindDeliberation,
		Constraints: council.Constraints{
			StoryID: "story-7", PlanID: "plan-3", Timeout: 600 * time.Second, MaxRetries: 0,
			Metadata: map[string]string{"ceremony_id": "ceremony-9"},
		},
		Agents: []council.Agent{
			{ID: "dev-1", Role: "DEV"}, {ID: "qa-1", Role: "QA"}, {ID: "arch-1", Role: "ARCHITECT", Model: "council-tiny"},
		},
		Model: "Qwen/Qwen3-0.6B",
	}
}

func extractionTask() council.Task {
	return council.Task{
		ID: "ceremony-BRC-1:story-ST-1:task-extraction", Description: "Extract the tasks.", Role: "TASK_EXTRACTOR",
		Kind: council.KindTaskExtraction,
		Constraints: council.Constraints{
			StoryID: "ST-1", Timeout: 300 * time.Second, MaxRetries: 3,
			Metadata: map[string]string{"ceremony_id": "BRC-1", "task_type": "TASK_EXTRACTION"},
		},
		Agents: []council.Agent{{ID: "agent-task-extractor-001", Role: "TASK_EXTRACTOR"}},
		Model:  "Qwen/Qwen3-0.6B",
	}
}

func derivationTask() council.Task {
	return council.Task{
		ID: "derive-plan-42", Description: "Derive the tasks of plan 42.", Role: "SYSTEM", Kind: council.KindTaskDerivation,
		Constraints: council.Constraints{
			StoryID: "ST-1", PlanID: "plan-42", Timeout: 120 * time.Second, MaxRetries: 2,
			Metadata: map[string]string{"story_id": "ST-1", "task_type": "TASK_DERIVATION"},
		},
		Agents: []council.Agent{{ID: "task-deriver-001", Role: "SYSTEM"}},
		Model:  "Qwen/Qwen3-0.6B",
	}
}

const extracted = `{"tasks": [{"title": "Add the limiter", "description": "Token bucket per key.", "estimated_hours": 8, ` +
	`"deliberation_indices": [0, 2], "priority": 1}, {"title": "Document it", "description": "Runbook.", "estimated_hours": 2, "priority": 3}]}`

// want is one expected message: its subject, and for a completed response
// its score and rank.
type want struct {
	subject, agent string
	score          float64
	rank           int
}

// schemaFile is the JSON Schema of a message body.
const schemaFile = "../schemas/legacy.agent.response.v1.json"

// compileSchema returns the validator of schemaFile.
func compileSchema(t *testing.T) *events.Validator {
	t.Helper()
	b, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatal(err)
	}
	v, err := events.CompileSchema("legacy.agent.response.v1", b)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMessages(t *testing.T) {
	schema := compileSchema(t)
	for _, tc := range []struct {
		name string
		d    func(t *testing.T) *council.Deliberation
		want []want
	}{
		{
			name: "backlog_review",
			d: func(t *testing.T) *council.Deliberation {
				return deliberate(t, backlogTask(), script{score: map[string]float64{
					"agent-architect-001": 0.5, "agent-architect-002": 0.9, "agent-architect-003": 0.7,
				}})
			},
			want: []want{
				{legacy.SubjectCompletedBacklogReview, "agent-architect-002", 0.9, 1},
				{legacy.SubjectCompletedBacklogReview, "agent-architect-003", 0.7, 2},
				{legacy.SubjectCompletedBacklogReview, "agent-architect-001", 0.5, 3},
			},
		},
		{
			name: "deliberation_partial_failure",
			d: func(t *testing.T) *council.Deliberation {
				return deliberate(t, deliberationTask(), script{
					fail: map[string]bool{"qa-1": true}, score: map[string]float64{"dev-1": 0.6, "arch-1": 0.8},
				})
			},
			want: []want{
				{legacy.SubjectCompleted, "arch-1", 0.8, 1},
				{legacy.SubjectCompleted, "dev-1", 0.6, 2},
				{legacy.SubjectFailed, "qa-1", 0, 0},
			},
		},
		{
			name: "all_failed",
			d: func(t *testing.T) *council.Deliberation {
				return deliberate(t, deliberationTask(), script{fail: map[string]bool{"dev-1": true, "qa-1": true, "arch-1": true}})
			},
			want: []want{
				{legacy.SubjectFailed, "dev-1", 0, 0},
				{legacy.SubjectFailed, "qa-1", 0, 0},
				{legacy.SubjectFailed, "arch-1", 0, 0},
			},
		},
		{
			name: "timeout",
			d: func(t *testing.T) *council.Deliberation {
				return deliberate(t, backlogTask(), script{timeout: true})
			},
			want: []want{
				{legacy.SubjectFailed, "agent-architect-001", 0, 0},
				{legacy.SubjectFailed, "agent-architect-002", 0, 0},
				{legacy.SubjectFailed, "agent-architect-003", 0, 0},
			},
		},
		{
			// A cancelled deliberation is, for the old consumers, a
			// failure of every agent with reason "cancelled: <why>".
			name: "cancelled",
			d: func(t *testing.T) *council.Deliberation {
				return deliberate(t, backlogTask(), script{cancel: true})
			},
			want: []want{
				{legacy.SubjectFailed, "agent-architect-001", 0, 0},
				{legacy.SubjectFailed, "agent-architect-002", 0, 0},
				{legacy.SubjectFailed, "agent-architect-003", 0, 0},
			},
		},
		{
			name: "task_extraction",
			d: func(t *testing.T) *council.Deliberation {
				return deliberate(t, extractionTask(), script{content: extracted})
			},
			want: []want{{legacy.SubjectCompletedTaskExtraction, "agent-task-extractor-001", 0, 1}},
		},
		{
			name: "task_extraction_not_json",
			d: func(t *testing.T) *council.Deliberation {
				return deliberate(t, extractionTask(), script{content: "Here are the tasks: none."})
			},
			want: []want{{legacy.SubjectCompletedTaskExtraction, "agent-task-extractor-001", 0, 1}},
		},
		{
			name: "task_derivation",
			d: func(t *testing.T) *council.Deliberation {
				return deliberate(t, derivationTask(), script{content: `{"tasks": []}`})
			},
			want: []want{{legacy.SubjectCompleted, "task-deriver-001", 0, 1}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.d(t)
			msgs, err := legacy.Messages(d, "council", pub)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs {
				if err := schema.Validate(m.Body); err != nil {
					t.Errorf("message %s on %s does not match %s: %v", m.ID, m.Subject, schemaFile, err)
				}
			}
			var got []want
			ids := map[string]bool{}
			for _, m := range msgs {
				env := decode(t, m)
				w := want{subject: m.Subject, agent: env.Payload.AgentID, score: env.Payload.Score, rank: env.Payload.Rank}
				got = append(got, w)
				wantType := legacy.EventCompleted
				if m.Subject == legacy.SubjectFailed {
					wantType = legacy.EventFailed
				}
				if env.EventType != wantType {
					t.Errorf("%s: event_type %q, want %q", w.agent, env.EventType, wantType)
				}
				if key := legacy.IdempotencyKey(wantType, d.ID, w.agent); m.ID != key || env.IdempotencyKey != key {
					t.Errorf("%s: id %q, idempotency_key %q, want both %q", w.agent, m.ID, env.IdempotencyKey, key)
				}
				if ids[m.ID] {
					t.Errorf("%s: id %s used twice", w.agent, m.ID)
				}
				ids[m.ID] = true
				if env.CorrelationID != d.ID || env.Payload.DeliberationID != d.ID {
					t.Errorf("%s: correlation_id %q, deliberation_id %q, want %q", w.agent, env.CorrelationID, env.Payload.DeliberationID, d.ID)
				}
				if env.Payload.TaskID != d.Task.ID || env.Payload.NumAgents != len(d.Task.Agents) {
					t.Errorf("%s: task_id %q, num_agents %d", w.agent, env.Payload.TaskID, env.Payload.NumAgents)
				}
				if a, _ := d.Agent(w.agent); env.Payload.Role != a.Role {
					t.Errorf("%s: role %q, want %q", w.agent, env.Payload.Role, a.Role)
				}
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(want{})); diff != "" {
				t.Errorf("messages (-want +got):\n%s", diff)
			}

			again, err := legacy.Messages(d, "council", pub)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(msgs, again); diff != "" {
				t.Errorf("mapping the same deliberation again differs (-first +second):\n%s", diff)
			}
			golden(t, filepath.Join("testdata", tc.name+".golden.json"), msgs)
		})
	}
}

func TestMessagesExtractionFields(t *testing.T) {
	schema := compileSchema(t)
	for _, tc := range []struct {
		content string
		tasks   int
	}{{extracted, 2}, {"not json", 0}, {`{"other": 1}`, 0}, {`{"tasks": [1, "two"]}`, 2}} {
		msgs, err := legacy.Messages(deliberate(t, extractionTask(), script{content: tc.content}), "council", pub)
		if err != nil {
			t.Fatal(err)
		}
		if err := schema.Validate(msgs[0].Body); err != nil {
			t.Errorf("content %q: the message does not match %s: %v", tc.content, schemaFile, err)
		}
		var env struct {
			Payload struct {
				Tasks      []any   `json:"tasks"`
				StoryID    *string `json:"story_id"`
				CeremonyID *string `json:"ceremony_id"`
				Proposal   struct {
					Content string `json:"content"`
				} `json:"proposal"`
			} `json:"payload"`
		}
		if err := json.Unmarshal(msgs[0].Body, &env); err != nil {
			t.Fatal(err)
		}
		p := env.Payload
		if p.Tasks == nil || len(p.Tasks) != tc.tasks {
			t.Errorf("content %q: tasks %v, want a list of %d", tc.content, p.Tasks, tc.tasks)
		}
		if p.StoryID == nil || *p.StoryID != "ST-1" || p.CeremonyID == nil || *p.CeremonyID != "BRC-1" {
			t.Errorf("content %q: story_id %v, ceremony_id %v", tc.content, p.StoryID, p.CeremonyID)
		}
		if p.Proposal.Content != tc.content {
			t.Errorf("proposal content %q, want %q", p.Proposal.Content, tc.content)
		}
	}
}

// TestSchemaRejectsWhatTheConsumersCannotRead checks that the schema is no
// formality: bodies the old consumers would misread, or that Messages never
// writes, do not validate.
func TestSchemaRejectsWhatTheConsumersCannotRead(t *testing.T) {
	schema := compileSchema(t)
	completed, err := legacy.Messages(deliberate(t, deliberationTask(), script{fail: map[string]bool{"qa-1": true}}), "council", pub)
	if err != nil {
		t.Fatal(err)
	}
	extraction, err := legacy.Messages(deliberate(t, extractionTask(), script{content: extracted}), "council", pub)
	if err != nil {
		t.Fatal(err)
	}
	bodies := map[string][]byte{
		"completed": completed[0].Body, "failed": completed[len(completed)-1].Body, "extraction": extraction[0].Body,
	}
	for _, tc := range []struct {
		name, body string
		edit       func(env map[string]any)
		want       string
	}{
		{"no idempotency key", "completed", func(env map[string]any) { delete(env, "idempotency_key") }, "idempotency_key is required"},
		{"uuid idempotency key", "completed", func(env map[string]any) { env["idempotency_key"] = "8d3f-uuid" }, "field idempotency_key: '8d3f-uuid' does not match pattern"},
		{"unknown envelope field", "completed", func(env map[string]any) { env["causation"] = "x" }, `unknown field "causation"`},
		{"epoch timestamp", "completed", func(env map[string]any) { env["timestamp"] = 1733570125.412 }, "field timestamp: expected string"},
		{"unknown event type", "completed", func(env map[string]any) { env["event_type"] = "agent.response.progress" }, "field event_type: value must be one of"},
		{"failed payload as completed", "failed", func(env map[string]any) { env["event_type"] = legacy.EventCompleted }, "field payload.status: value must be 'completed'"},
		{"completed payload as failed", "completed", func(env map[string]any) { env["event_type"] = legacy.EventFailed }, "field payload.status: value must be 'failed'"},
		{"no role", "completed", func(env map[string]any) { delete(payload(env), "role") }, "field payload.role is required"},
		{"role an object", "failed", func(env map[string]any) { payload(env)["role"] = map[string]any{"name": "DEV"} }, "field payload.role: expected string"},
		{"tasks on the generic subject", "completed", func(env map[string]any) { payload(env)["tasks"] = []any{} }, "field payload.validated_at is required"},
		{"extraction without tasks", "extraction", func(env map[string]any) { delete(payload(env), "tasks") }, "field payload.tasks is required"},
		{"failure with constraints", "failed", func(env map[string]any) { payload(env)["constraints"] = map[string]any{} }, `unknown field "constraints" in payload`},
		{"failure without a top-level story_id", "failed", func(env map[string]any) { delete(env, "story_id") }, "story_id is required"},
		{"no top-level task_id", "completed", func(env map[string]any) { delete(env, "task_id") }, "task_id is required"},
		{"completed without output", "completed", func(env map[string]any) { delete(env, "output") }, "output is required"},
		{"failure without error", "failed", func(env map[string]any) { delete(env, "error") }, "error is required"},
		{"unknown error type", "failed", func(env map[string]any) { payload(env)["error_type"] = "RuntimeError" }, "field payload.error_type: value must be one of"},
	} {
		var env map[string]any
		if err := json.Unmarshal(bodies[tc.body], &env); err != nil {
			t.Fatal(err)
		}
		if err := schema.Validate(bodies[tc.body]); err != nil {
			t.Fatalf("%s: the unedited %s body does not validate: %v", tc.name, tc.body, err)
		}
		tc.edit(env)
		b, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		err = schema.Validate(b)
		if !errors.Is(err, council.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want ErrInvalid naming %q", tc.name, err, tc.want)
		}
	}
}

func payload(env map[string]any) map[string]any {
	p, _ := env["payload"].(map[string]any)
	return p
}

func TestIdempotencyKey(t *testing.T) {
	// The key create_event_envelope computes for entity_id = deliberation
	// and operation = agent: sha256("agent.response.completed:dlb-1:a1").
	const want = "bb9c6693e47c3994b15adcc7e2bd62ea163ecf20066bc915ddb9739552945549"
	got := legacy.IdempotencyKey("agent.response.completed", "dlb-1", "a1")
	if got != want {
		t.Fatalf("key %q, want %q", got, want)
	}
	keys := map[string]bool{}
	for _, k := range []string{
		legacy.IdempotencyKey(legacy.EventCompleted, "dlb-1", "a1"),
		legacy.IdempotencyKey(legacy.EventCompleted, "dlb-1", "a2"),
		legacy.IdempotencyKey(legacy.EventCompleted, "dlb-2", "a1"),
		legacy.IdempotencyKey(legacy.EventFailed, "dlb-1", "a1"),
	} {
		if keys[k] {
			t.Errorf("key %s repeats", k)
		}
		keys[k] = true
	}
	if legacy.IdempotencyKey(legacy.EventCompleted, "dlb-1", "a1") != got {
		t.Error("the key is not deterministic")
	}
}

func TestCompletedSubject(t *testing.T) {
	for _, tc := range []struct {
		kind     council.Kind
		taskType string
		want     string
	}{
		{council.KindDeliberation, "", legacy.SubjectCompleted},
		{council.KindDeliberation, "BACKLOG_REVIEW_ROLE", legacy.SubjectCompletedBacklogReview},
		{council.KindDeliberation, "TASK_EXTRACTION", legacy.SubjectCompletedTaskExtraction},
		{council.KindBacklogReview, "", legacy.SubjectCompletedBacklogReview},
		{council.KindBacklogReview, "BACKLOG_REVIEW_ROLE", legacy.SubjectCompletedBacklogReview},
		// task_type wins over the kind, as the old publisher routed by task_type only.
		{council.KindBacklogReview, "REVIEW", legacy.SubjectCompleted},
		{council.KindTaskExtraction, "", legacy.SubjectCompletedTaskExtraction},
		{council.KindTaskExtraction, "TASK_EXTRACTION", legacy.SubjectCompletedTaskExtraction},
		{council.KindTaskDerivation, "", legacy.SubjectCompleted},
		{council.KindTaskDerivation, "TASK_DERIVATION", legacy.SubjectCompleted},
		// task_type in any case, with '-' or '_' (the old callers wrote both).
		{council.KindDeliberation, "task_extraction", legacy.SubjectCompletedTaskExtraction},
		{council.KindDeliberation, "task-extraction", legacy.SubjectCompletedTaskExtraction},
		{council.KindDeliberation, "backlog_review", legacy.SubjectCompletedBacklogReview},
		{council.KindDeliberation, "backlog-review", legacy.SubjectCompletedBacklogReview},
		{council.KindDeliberation, "Backlog_Review_Role", legacy.SubjectCompletedBacklogReview},
		{council.KindTaskExtraction, "task_derivation", legacy.SubjectCompleted},
	} {
		task := council.Task{Kind: tc.kind}
		if tc.taskType != "" {
			task.Constraints.Metadata = map[string]string{"task_type": tc.taskType}
		}
		if got := legacy.CompletedSubject(task); got != tc.want {
			t.Errorf("kind %s, task_type %q: subject %q, want %q", tc.kind, tc.taskType, got, tc.want)
		}
	}
}

func TestMessagesRejectsRunningDeliberation(t *testing.T) {
	d, err := council.New("dlb-1", deliberationTask(), t0)
	if err != nil {
		t.Fatal(err)
	}
	for name, d := range map[string]*council.Deliberation{"running": d, "nil": nil} {
		if _, err := legacy.Messages(d, "council", pub); !errors.Is(err, council.ErrInvalid) {
			t.Errorf("%s: err %v, want ErrInvalid", name, err)
		}
	}
}

// envelope is what the tests read back from a message body.
type envelope struct {
	EventType      string `json:"event_type"`
	IdempotencyKey string `json:"idempotency_key"`
	CorrelationID  string `json:"correlation_id"`
	Payload        struct {
		TaskID         string  `json:"task_id"`
		AgentID        string  `json:"agent_id"`
		Role           string  `json:"role"`
		Status         string  `json:"status"`
		NumAgents      int     `json:"num_agents"`
		Score          float64 `json:"score"`
		Rank           int     `json:"rank"`
		DeliberationID string  `json:"deliberation_id"`
	} `json:"payload"`
}

func decode(t *testing.T, m legacy.Message) envelope {
	t.Helper()
	var env envelope
	if err := json.Unmarshal(m.Body, &env); err != nil {
		t.Fatalf("message %s: body is not JSON: %v", m.ID, err)
	}
	return env
}

// golden compares msgs with the golden file at path (rewritten with -update).
func golden(t *testing.T, path string, msgs []legacy.Message) {
	t.Helper()
	type entry struct {
		Subject string          `json:"subject"`
		ID      string          `json:"nats_msg_id"`
		Body    json.RawMessage `json:"body"`
	}
	entries := make([]entry, 0, len(msgs))
	for _, m := range msgs {
		entries = append(entries, entry{m.Subject, m.ID, m.Body})
	}
	var got bytes.Buffer
	enc := json.NewEncoder(&got)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(entries); err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden %s: %v (run the test with -update to create it)", path, err)
	}
	if diff := cmp.Diff(string(want), got.String()); diff != "" {
		t.Errorf("messages differ from %s (-want +got):\n%s", path, diff)
	}
}
