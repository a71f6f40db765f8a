package council_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

func promptTask() council.Task {
	t := counciltest.Task().WithDefaults()
	t.Description = "Design the login flow with SSO."
	t.Constraints.Metadata = map[string]string{"ceremony_id": "SECRET-CEREMONY-42", "task_type": "HIDDEN-TYPE"}
	return t
}

func TestProposalMessages(t *testing.T) {
	task := promptTask()
	prev := council.Proposal{AgentID: qa, Stage: 0, Content: "PREVIOUS-PROPOSAL-TEXT"}
	critiques := []council.Critique{
		{ReviewerID: devops, Overall: 0.4, Strengths: []string{"STRENGTH-1"}, Issues: []string{"ISSUE-1", "ISSUE-2"}, Suggestions: []string{"SUGGESTION-1"}},
		{ReviewerID: archi, Overall: 0.8, Issues: []string{"ISSUE-3"}},
	}
	tests := []struct {
		name      string
		req       council.ProposalRequest
		system    []string
		user      []string
		notInUser []string
	}{
		{
			name:      "first proposal",
			req:       council.ProposalRequest{Task: task, Agent: council.Agent{ID: qa, Role: "QA"}, Key: "p.0." + qa},
			system:    []string{"correctness, completeness, clarity, feasibility", "Task task-1:\nDesign the login flow with SSO."},
			user:      []string{"Your role is QA", "test strategy, edge cases", "Write your proposal"},
			notInUser: []string{"Revise", "Critique 1"},
		},
		{
			name: "revision carries the previous proposal and its critiques",
			req: council.ProposalRequest{Task: task, Agent: council.Agent{ID: qa, Role: "qa"}, Stage: 1,
				Previous: &prev, Critiques: critiques},
			system: []string{"Task task-1:"},
			user: []string{"Your role is QA", "test strategy", "Revise your own proposal", "Your proposal (round 0):\nPREVIOUS-PROPOSAL-TEXT",
				"Critique 1 (overall 0.40)", "Strengths:\n- STRENGTH-1", "Issues:\n- ISSUE-1\n- ISSUE-2", "Suggestions:\n- SUGGESTION-1",
				"Critique 2 (overall 0.80)", "- ISSUE-3"},
			notInUser: []string{"Write your proposal"},
		},
		{
			name: "unknown role gets the generic line",
			req:  council.ProposalRequest{Task: task, Agent: council.Agent{ID: "x", Role: "Security"}},
			user: []string{"Your role is SECURITY", "you focus on the concerns an expert Security engineer brings"},
		},
		{
			name: "agent prompt template goes with the agent's role",
			req:  council.ProposalRequest{Task: task, Agent: council.Agent{ID: "x", Role: "DEV", PromptTemplate: "Prefer Go."}},
			user: []string{"clean, tested, maintainable code", "Prefer Go."},
		},
		{
			name: "single pass asks for JSON only",
			req: func() council.ProposalRequest {
				tk := taskOf(council.KindTaskExtraction).WithDefaults()
				return council.ProposalRequest{Task: tk, Agent: tk.Agents[0]}
			}(),
			user:      []string{"extracting concrete, actionable, ordered tasks", "Answer with JSON that matches the requested schema"},
			notInUser: []string{"Write your proposal"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms := council.ProposalMessages(tt.req)
			if len(ms) != 2 || ms[0].Role != "system" || ms[1].Role != "user" {
				t.Fatalf("messages = %+v, want system then user", ms)
			}
			for _, w := range tt.system {
				if !strings.Contains(ms[0].Content, w) {
					t.Errorf("system prompt %q does not contain %q", ms[0].Content, w)
				}
			}
			for _, w := range tt.user {
				if !strings.Contains(ms[1].Content, w) {
					t.Errorf("user prompt %q does not contain %q", ms[1].Content, w)
				}
			}
			for _, w := range tt.notInUser {
				if strings.Contains(ms[1].Content, w) {
					t.Errorf("user prompt %q contains %q", ms[1].Content, w)
				}
			}
			assertNoMetadata(t, ms)
		})
	}
}

// assertNoMetadata fails if the caller's metadata reached a prompt (bug B16).
func assertNoMetadata(t *testing.T, ms []council.Message) {
	t.Helper()
	for _, m := range ms {
		for _, secret := range []string{"SECRET-CEREMONY-42", "HIDDEN-TYPE", "ceremony_id", "task_type"} {
			if strings.Contains(m.Content, secret) {
				t.Errorf("%s prompt contains metadata %q:\n%s", m.Role, secret, m.Content)
			}
		}
	}
}

func TestStableTextFirst(t *testing.T) {
	// Every prompt of a deliberation — every agent, whatever its role, every
	// round, proposals and critiques — starts with the same system prompt
	// holding the task, so the server's prefix cache computes it once.
	task := promptTask()
	prev := council.Proposal{Content: "mine"}
	prompts := [][]council.Message{
		council.ProposalMessages(council.ProposalRequest{Task: task, Agent: council.Agent{ID: "dev-1", Role: "DEV"}}),
		council.ProposalMessages(council.ProposalRequest{Task: task, Agent: council.Agent{ID: "qa-1", Role: "QA"}, Stage: 1, Previous: &prev}),
		council.CritiqueMessages(council.CritiqueRequest{Task: task, Reviewer: council.Agent{ID: "arch-1", Role: "ARCHITECT"}, Proposal: prev}),
	}
	for i, ms := range prompts[1:] {
		if ms[0].Content != prompts[0][0].Content {
			t.Errorf("system prompt %d differs from the first:\n%q\n%q", i+1, ms[0].Content, prompts[0][0].Content)
		}
	}
	sys := prompts[0][0].Content
	if !strings.HasPrefix(sys, "You are a member of a council") || !strings.HasSuffix(sys, "Task task-1:\nDesign the login flow with SSO.\n") {
		t.Errorf("system prompt is not preamble … task: %q", sys)
	}
	for _, ms := range prompts {
		if strings.Contains(ms[0].Content, "Your role is") {
			t.Errorf("the per-agent role leaked into the shared system prompt: %q", ms[0].Content)
		}
	}
}

func TestCritiqueMessages(t *testing.T) {
	task := promptTask()
	ms := council.CritiqueMessages(council.CritiqueRequest{
		Task: task, Reviewer: council.Agent{ID: devops, Role: "DEVOPS"},
		Proposal: council.Proposal{AgentID: qa, Content: "PROPOSAL-UNDER-REVIEW"},
	})
	if len(ms) != 2 || ms[0].Role != "system" || ms[1].Role != "user" {
		t.Fatalf("messages = %+v, want system then user", ms)
	}
	if !strings.Contains(ms[0].Content, "Task task-1:") {
		t.Errorf("system prompt %q does not hold the task", ms[0].Content)
	}
	for _, w := range []string{"You are " + devops + ". Your role is DEVOPS", "deployment, CI/CD", "Review the proposal below, written by another member of the council",
		"(correctness, completeness, clarity, feasibility)", "from 0 (unusable) to 10 (excellent)", "Proposal:\nPROPOSAL-UNDER-REVIEW"} {
		if !strings.Contains(ms[1].Content, w) {
			t.Errorf("user prompt %q does not contain %q", ms[1].Content, w)
		}
	}
	assertNoMetadata(t, ms)
}

func TestCritiqueSchema(t *testing.T) {
	rubric := []string{"correctness", "security"}
	s := council.CritiqueSchema(rubric)
	if s.Name != "critique" || !s.Strict {
		t.Errorf("schema name %q strict %v; want critique, strict", s.Name, s.Strict)
	}
	var doc struct {
		Type       string   `json:"type"`
		Required   []string `json:"required"`
		Additional *bool    `json:"additionalProperties"`
		Properties struct {
			Scores struct {
				Properties map[string]struct {
					Type    string `json:"type"`
					Minimum int    `json:"minimum"`
					Maximum int    `json:"maximum"`
				} `json:"properties"`
				Required   []string `json:"required"`
				Additional *bool    `json:"additionalProperties"`
			} `json:"scores"`
			Overall struct {
				Type    string `json:"type"`
				Minimum int    `json:"minimum"`
				Maximum int    `json:"maximum"`
			} `json:"overall"`
			Issues struct {
				Type     string `json:"type"`
				MaxItems int    `json:"maxItems"`
			} `json:"issues"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(s.Schema, &doc); err != nil {
		t.Fatalf("schema is not valid JSON: %v\n%s", err, s.Schema)
	}
	if doc.Type != "object" || doc.Additional == nil || *doc.Additional {
		t.Errorf("schema type %q additionalProperties %v; want a closed object", doc.Type, doc.Additional)
	}
	if diff := cmp.Diff([]string{"scores", "overall", "strengths", "issues", "suggestions", "confidence"}, doc.Required); diff != "" {
		t.Errorf("required (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(rubric, doc.Properties.Scores.Required); diff != "" {
		t.Errorf("scores.required is not the rubric (-want +got):\n%s", diff)
	}
	if doc.Properties.Scores.Additional == nil || *doc.Properties.Scores.Additional {
		t.Error("scores allows criteria outside the rubric")
	}
	if diff := cmp.Diff([]string{"correctness", "security"}, keysOf(doc.Properties.Scores.Properties), cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("score properties (-want +got):\n%s", diff)
	}
	for name, p := range doc.Properties.Scores.Properties {
		if p.Type != "integer" || p.Minimum != 0 || p.Maximum != 10 {
			t.Errorf("score %s = %+v, want integer 0..10", name, p)
		}
	}
	if o := doc.Properties.Overall; o.Type != "integer" || o.Minimum != 0 || o.Maximum != 10 {
		t.Errorf("overall = %+v, want integer 0..10", o)
	}
	if i := doc.Properties.Issues; i.Type != "array" || i.MaxItems < 1 {
		t.Errorf("issues = %+v, want a bounded array", i)
	}
	if got := counciltest.RubricOf(&s); !cmp.Equal(got, rubric) {
		t.Errorf("counciltest.RubricOf = %v, want %v", got, rubric)
	}
}

func keysOf[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestParseCritique(t *testing.T) {
	rubric := []string{"correctness", "clarity"}
	good := `{"scores":{"correctness":7,"clarity":10},"overall":8,"strengths":["s"],"issues":["i"],"suggestions":["g"]}`
	got, err := council.ParseCritique("\n "+good+"\n", rubric)
	if err != nil {
		t.Fatalf("ParseCritique(good) error = %v", err)
	}
	want := council.Critique{Scores: map[string]float64{"correctness": 0.7, "clarity": 1}, Overall: 0.8,
		Strengths: []string{"s"}, Issues: []string{"i"}, Suggestions: []string{"g"}}
	if diff := cmp.Diff(want, got, approx); diff != "" {
		t.Errorf("ParseCritique (-want +got):\n%s", diff)
	}
	// The schema asks for a confidence; a reply without one still parses
	// (nil: no weight of its own), one with one is normalised like a score.
	sure, err := council.ParseCritique(`{"scores":{"correctness":7,"clarity":10},"overall":8,"confidence":9}`, rubric)
	if err != nil || sure.Confidence == nil || *sure.Confidence != 0.9 || got.Confidence != nil {
		t.Errorf("ParseCritique(confidence 9) = %+v, %v; want confidence 0.9 (and none without it: %v)", sure, err, got.Confidence)
	}
	zero, err := council.ParseCritique(`{"scores":{"correctness":0,"clarity":0,"extra":3},"overall":0}`, rubric)
	if err != nil || zero.Overall != 0 || len(zero.Scores) != 2 {
		t.Errorf("ParseCritique(all zero, extra criterion) = %+v, %v; want overall 0 and only the rubric's scores", zero, err)
	}

	bad := []struct {
		name, content, want string
	}{
		{"not JSON", "The proposal is good. 8/10", "critique is not valid JSON"},
		{"empty", "", "critique is not valid JSON"},
		{"truncated", `{"scores":{"correctness":7`, "critique is not valid JSON"},
		{"missing overall", `{"scores":{"correctness":7,"clarity":7}}`, "critique has no overall score"},
		{"missing criterion", `{"scores":{"correctness":7},"overall":7}`, `critique has no score for criterion "clarity"`},
		{"criterion above 10", `{"scores":{"correctness":11,"clarity":7},"overall":7}`, `score correctness="11" is not a number in [0,10]`},
		{"negative criterion", `{"scores":{"correctness":7,"clarity":-1},"overall":7}`, `score clarity="-1"`},
		{"overall above 10", `{"scores":{"correctness":7,"clarity":7},"overall":70}`, `score overall="70"`},
		{"confidence above 10", `{"scores":{"correctness":7,"clarity":7},"overall":7,"confidence":11}`, `score confidence="11"`},
		{"overall overflows", `{"scores":{"correctness":7,"clarity":7},"overall":1e400}`, `score overall="1e400"`},
		{"scores not an object", `{"scores":[7,7],"overall":7}`, "critique is not valid JSON"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := council.ParseCritique(tt.content, rubric)
			if !errors.Is(err, council.ErrBadOutput) {
				t.Fatalf("ParseCritique(%q) error = %v, want ErrBadOutput", tt.content, err)
			}
			if !council.Retryable(err) {
				t.Errorf("bad model output is not retryable")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestStructuredSchema(t *testing.T) {
	tests := []struct {
		kind     council.Kind
		ok       bool
		name     string
		maxItems int
		required []string
	}{
		{council.KindTaskExtraction, true, "TASK_EXTRACTION", 20, []string{"title", "description", "estimated_hours", "priority"}},
		{council.KindTaskDerivation, true, "TASK_DERIVATION", 8, []string{"title", "description", "role", "estimated_hours", "priority"}},
		{council.KindDeliberation, false, "", 0, nil},
		{council.KindBacklogReview, false, "", 0, nil},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			s, ok := council.StructuredSchema(tt.kind)
			if ok != tt.ok || s.Name != tt.name {
				t.Fatalf("StructuredSchema = %q, %v; want %q, %v", s.Name, ok, tt.name, tt.ok)
			}
			if !ok {
				return
			}
			if !s.Strict {
				t.Error("schema is not strict")
			}
			var doc struct {
				Required   []string `json:"required"`
				Properties struct {
					Tasks struct {
						Type     string `json:"type"`
						MaxItems int    `json:"maxItems"`
						Items    struct {
							Required []string `json:"required"`
						} `json:"items"`
					} `json:"tasks"`
				} `json:"properties"`
			}
			if err := json.Unmarshal(s.Schema, &doc); err != nil {
				t.Fatalf("schema is not valid JSON: %v", err)
			}
			if !cmp.Equal(doc.Required, []string{"tasks"}) || doc.Properties.Tasks.Type != "array" || doc.Properties.Tasks.MaxItems != tt.maxItems {
				t.Errorf("schema = %+v; want required tasks, an array of at most %d", doc, tt.maxItems)
			}
			if diff := cmp.Diff(tt.required, doc.Properties.Tasks.Items.Required); diff != "" {
				t.Errorf("task fields required (-want +got):\n%s", diff)
			}
		})
	}
}
