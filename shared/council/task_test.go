package council_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// taskOf returns a valid task of kind, before defaults.
func taskOf(kind council.Kind) council.Task {
	t := counciltest.Task()
	t.Kind = kind
	switch kind {
	case council.KindBacklogReview:
		t.ID = "ceremony-c1:story-ST-1:role-DEV"
		t.Constraints.PlanID = ""
	case council.KindTaskExtraction, council.KindTaskDerivation:
		t.Constraints.PlanID, t.Constraints.StoryID = "", ""
		t.Role = "TASK_EXTRACTOR"
		t.Agents = []council.Agent{{ID: "extractor", Role: "TASK_EXTRACTOR"}}
	}
	return t
}

func agents(n int) []council.Agent {
	out := make([]council.Agent, n)
	for i := range out {
		out[i] = council.Agent{ID: "a" + strings.Repeat("x", i%60) + strconv.Itoa(i), Role: "DEV"}
	}
	return out
}

func TestTaskValidateAcceptsEveryKind(t *testing.T) {
	for _, kind := range []council.Kind{council.KindDeliberation, council.KindBacklogReview, council.KindTaskExtraction, council.KindTaskDerivation} {
		t.Run(string(kind), func(t *testing.T) {
			if err := taskOf(kind).WithDefaults().Validate(); err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
		})
	}
}

func TestTaskValidateRejects(t *testing.T) {
	tests := []struct {
		name   string
		kind   council.Kind
		mutate func(t *council.Task) // applied after WithDefaults
		want   []string              // substrings of the error
	}{
		{"missing id", council.KindDeliberation, func(t *council.Task) { t.ID = " " }, []string{"task_id is required"}},
		{"long id", council.KindDeliberation, func(t *council.Task) { t.ID = strings.Repeat("x", 257) }, []string{"task_id is longer than 256"}},
		{"missing description", council.KindDeliberation, func(t *council.Task) { t.Description = "\n" }, []string{"description is required"}},
		{"long description", council.KindDeliberation, func(t *council.Task) { t.Description = strings.Repeat("x", council.MaxDescription+1) }, []string{"description is longer than 65536 bytes"}},
		{"missing role", council.KindDeliberation, func(t *council.Task) { t.Role = "" }, []string{"role is required"}},
		{"unknown kind", council.KindDeliberation, func(t *council.Task) { t.Kind = "brainstorm" }, []string{`kind "brainstorm" is unknown`}},
		{"empty kind", council.KindDeliberation, func(t *council.Task) { t.Kind = "" }, []string{`kind "" is unknown`}},
		{"deliberation without plan", council.KindDeliberation, func(t *council.Task) { t.Constraints.PlanID = "" }, []string{"plan_id is required for kind deliberation"}},
		{"deliberation without story", council.KindDeliberation, func(t *council.Task) { t.Constraints.StoryID = " " }, []string{"story_id is required for kind deliberation"}},
		{"deliberation without plan and story", council.KindDeliberation, func(t *council.Task) { t.Constraints.PlanID, t.Constraints.StoryID = "", "" },
			[]string{"plan_id is required", "story_id is required"}},
		{"backlog review without story", council.KindBacklogReview, func(t *council.Task) { t.Constraints.StoryID = "" }, []string{"story_id is required for kind backlog_review"}},
		{"backlog review with plain id", council.KindBacklogReview, func(t *council.Task) { t.ID = "task-1" }, []string{`task_id "task-1" does not have the form ceremony-{id}:story-{id}:role-{ROLE}`}},
		{"backlog review with lower-case role", council.KindBacklogReview, func(t *council.Task) { t.ID = "ceremony-1:story-2:role-dev" }, []string{"does not have the form"}},
		{"unknown backend", council.KindDeliberation, func(t *council.Task) { t.Backend = "lambda" }, []string{`backend "lambda" is unknown`}},
		{"no agents", council.KindDeliberation, func(t *council.Task) { t.Agents = nil }, []string{"at least one agent is required"}},
		{"too many agents", council.KindDeliberation, func(t *council.Task) { t.Agents = agents(council.MaxAgents + 1) }, []string{"at most 128 agents are allowed, got 129"}},
		{"extraction with two agents", council.KindTaskExtraction, func(t *council.Task) { t.Agents = agents(2) },
			[]string{"kind task_extraction is a single-agent structured generation: exactly one agent is required, got 2"}},
		{"derivation with three agents", council.KindTaskDerivation, func(t *council.Task) { t.Agents = agents(3) }, []string{"exactly one agent is required, got 3"}},
		{"agent id with dot", council.KindDeliberation, func(t *council.Task) { t.Agents[1].ID = "agent.qa" }, []string{`agents[1].id "agent.qa" must be 1-64 letters`}},
		{"agent id with space", council.KindDeliberation, func(t *council.Task) { t.Agents[0].ID = "a b" }, []string{`agents[0].id "a b" must be`}},
		{"agent id empty", council.KindDeliberation, func(t *council.Task) { t.Agents[2].ID = "" }, []string{`agents[2].id "" must be`}},
		{"agent id too long", council.KindDeliberation, func(t *council.Task) { t.Agents[0].ID = strings.Repeat("a", 65) }, []string{"agents[0].id"}},
		{"duplicate agent", council.KindDeliberation, func(t *council.Task) { t.Agents[2].ID = t.Agents[0].ID }, []string{`agents[2].id "agent-architect-001" is duplicated`}},
		{"agent without role", council.KindDeliberation, func(t *council.Task) { t.Agents[1].Role = " " }, []string{"agents[1].role is required"}},
		{"negative timeout", council.KindDeliberation, func(t *council.Task) { t.Constraints.Timeout = -time.Second }, []string{"timeout_seconds must be between 1 and 21600"}},
		{"timeout too long", council.KindDeliberation, func(t *council.Task) { t.Constraints.Timeout = council.MaxTimeout + time.Second }, []string{"timeout_seconds must be between"}},
		{"negative retries", council.KindDeliberation, func(t *council.Task) { t.Constraints.MaxRetries = -1 }, []string{"max_retries must be between 0 and 10"}},
		{"too many retries", council.KindDeliberation, func(t *council.Task) { t.Constraints.MaxRetries = 11 }, []string{"max_retries must be between 0 and 10"}},
		{"zero rounds", council.KindDeliberation, func(t *council.Task) { t.Constraints.Rounds = 0 }, []string{"rounds must be between 1 and 5"}},
		{"too many rounds", council.KindDeliberation, func(t *council.Task) { t.Constraints.Rounds = 6 }, []string{"rounds must be between 1 and 5"}},
		{"zero peers", council.KindDeliberation, func(t *council.Task) { t.Constraints.Peers = 0 }, []string{"peers must be at least 1"}},
		{"more peers than other agents", council.KindDeliberation, func(t *council.Task) { t.Constraints.Peers = 3 },
			[]string{"peers must be at most the number of other agents (2), got 3"}},
		{"zero max tokens", council.KindDeliberation, func(t *council.Task) { t.Constraints.MaxTokens = 0 }, []string{"max_tokens must be between 1 and 32768"}},
		{"too many max tokens", council.KindDeliberation, func(t *council.Task) { t.Constraints.MaxTokens = council.MaxTokensLimit + 1 }, []string{"max_tokens must be between"}},
		{"result too large", council.KindDeliberation, func(t *council.Task) {
			t.Agents, t.Constraints.MaxTokens, t.Constraints.Rounds = agents(council.MaxAgents), 32768, council.MaxRounds
		}, []string{"more than the 49152 KiB", "lower max_tokens, rounds or the number of agents"}},
		{"rubric with capitals", council.KindDeliberation, func(t *council.Task) { t.Constraints.Rubric = []string{"correctness", "Clarity"} }, []string{`rubric[1] "Clarity" must be a lower_snake_case name`}},
		{"rubric with spaces", council.KindDeliberation, func(t *council.Task) { t.Constraints.Rubric = []string{"test coverage"} }, []string{`rubric[0] "test coverage"`}},
		{"rubric too long", council.KindDeliberation, func(t *council.Task) { t.Constraints.Rubric = []string{strings.Repeat("a", 41)} }, []string{"rubric[0]"}},
		{"unknown aggregation", council.KindDeliberation, func(t *council.Task) { t.Constraints.Aggregation = "median" },
			[]string{`aggregation "median" is unknown (want mean, borda or confidence)`}},
		{"unknown final review", council.KindDeliberation, func(t *council.Task) { t.Constraints.FinalReview = "some" },
			[]string{`final_review "some" is unknown (want all or peers)`}},
		{"final review by all pairs of too many agents", council.KindDeliberation, func(t *council.Task) {
			t.Agents, t.Constraints.MaxTokens, t.Constraints.FinalReview = agents(council.MaxAllPairsAgents+1), 256, council.FinalReviewAll
		}, []string{"final_review all with 17 agents would ask 272 critiques: at most 16 agents review all pairs; use final_review peers"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			task := taskOf(tt.kind).WithDefaults()
			tt.mutate(&task)
			err := task.Validate()
			if !errors.Is(err, council.ErrInvalid) {
				t.Fatalf("Validate() = %v, want an error wrapping ErrInvalid", err)
			}
			if council.Retryable(err) {
				t.Errorf("Retryable(%v) = true, want false", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestTaskValidateAccepts(t *testing.T) {
	tests := []struct {
		name   string
		kind   council.Kind
		mutate func(t *council.Task)
	}{
		{"zero retries means never retry", council.KindDeliberation, func(t *council.Task) { t.Constraints.MaxRetries = 0 }},
		{"max retries", council.KindDeliberation, func(t *council.Task) { t.Constraints.MaxRetries = council.MaxRetriesLimit }},
		{"one agent deliberation", council.KindDeliberation, func(t *council.Task) { t.Agents = t.Agents[:1] }},
		{"peers = other agents", council.KindDeliberation, func(t *council.Task) { t.Constraints.Peers = 2 }},
		{"max rounds", council.KindDeliberation, func(t *council.Task) { t.Constraints.Rounds = council.MaxRounds }},
		{"max agents", council.KindDeliberation, func(t *council.Task) {
			// Above MaxAllPairsAgents the final review defaults to peers.
			t.Agents, t.Constraints.MaxTokens, t.Constraints.FinalReview = agents(council.MaxAgents), 256, council.FinalReviewPeers
		}},
		{"final review by all pairs of the most agents", council.KindDeliberation, func(t *council.Task) {
			t.Agents = agents(council.MaxAllPairsAgents)
		}},
		{"borda", council.KindDeliberation, func(t *council.Task) { t.Constraints.Aggregation = council.AggregationBorda }},
		{"confidence over the ring", council.KindDeliberation, func(t *council.Task) {
			t.Constraints.Aggregation, t.Constraints.FinalReview = council.AggregationConfidence, council.FinalReviewPeers
		}},
		{"max timeout", council.KindDeliberation, func(t *council.Task) { t.Constraints.Timeout = council.MaxTimeout }},
		{"ray backend", council.KindDeliberation, func(t *council.Task) { t.Backend = council.BackendRay }},
		{"agent ids with - and _", council.KindDeliberation, func(t *council.Task) { t.Agents[0].ID = "A_b-9" }},
		{"backlog review with odd ids", council.KindBacklogReview, func(t *council.Task) { t.ID = "ceremony-2024.Q1:story-ST_9:role-DEVOPS_2" }},
		{"extraction ignores rounds and peers", council.KindTaskExtraction, func(t *council.Task) { t.Constraints.Rounds, t.Constraints.Peers = 0, 0 }},
		{"custom rubric", council.KindDeliberation, func(t *council.Task) { t.Constraints.Rubric = []string{"security", "cost_2"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			task := taskOf(tt.kind).WithDefaults()
			tt.mutate(&task)
			if err := task.Validate(); err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
		})
	}
}

func TestTaskWithDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   council.Task
		want council.Constraints
		back council.Backend
	}{
		{
			name: "zero constraints get defaults, zero retries kept",
			in:   council.Task{Kind: council.KindDeliberation},
			want: council.Constraints{Protocol: council.ProtocolCritiqueRevise, Timeout: council.DefaultTimeout, Rounds: 1, Peers: 1, MaxTokens: 512, Rubric: council.DefaultRubric(),
				Aggregation: council.AggregationMean, FinalReview: council.FinalReviewAll},
			back: council.BackendFunctions,
		},
		{
			name: "set constraints are kept",
			in: council.Task{Kind: council.KindBacklogReview, Backend: council.BackendRay, Constraints: council.Constraints{
				Timeout: time.Minute, MaxRetries: 3, Rounds: 2, Peers: 2, MaxTokens: 100, Rubric: []string{"security"},
				Aggregation: council.AggregationBorda, FinalReview: council.FinalReviewPeers}},
			want: council.Constraints{Protocol: council.ProtocolCritiqueRevise, Timeout: time.Minute, MaxRetries: 3, Rounds: 2, Peers: 2, MaxTokens: 100, Rubric: []string{"security"},
				Aggregation: council.AggregationBorda, FinalReview: council.FinalReviewPeers},
			back: council.BackendRay,
		},
		{
			name: "single pass has no rounds or peers",
			in:   council.Task{Kind: council.KindTaskDerivation, Constraints: council.Constraints{Rounds: 3, Peers: 2}},
			want: council.Constraints{Protocol: council.ProtocolCritiqueRevise, Timeout: council.DefaultTimeout, MaxTokens: 512, Rubric: council.DefaultRubric(),
				Aggregation: council.AggregationMean, FinalReview: council.FinalReviewAll},
			back: council.BackendFunctions,
		},
		{
			name: "a council above MaxAllPairsAgents reviews by peers",
			in:   council.Task{Kind: council.KindDeliberation, Agents: make([]council.Agent, council.MaxAllPairsAgents+1)},
			want: council.Constraints{Protocol: council.ProtocolCritiqueRevise, Timeout: council.DefaultTimeout, Rounds: 1, Peers: 1, MaxTokens: 512, Rubric: council.DefaultRubric(),
				Aggregation: council.AggregationMean, FinalReview: council.FinalReviewPeers},
			back: council.BackendFunctions,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.in.WithDefaults()
			if diff := cmp.Diff(tt.want, got.Constraints); diff != "" {
				t.Errorf("constraints (-want +got):\n%s", diff)
			}
			if got.Backend != tt.back {
				t.Errorf("backend = %q, want %q", got.Backend, tt.back)
			}
		})
	}
}

func TestDefaultRubricIsACopy(t *testing.T) {
	r := council.DefaultRubric()
	r[0] = "changed"
	if got := council.DefaultRubric(); got[0] != "correctness" {
		t.Errorf("DefaultRubric()[0] = %q after a caller changed its copy, want correctness", got[0])
	}
	task := council.Task{}.WithDefaults()
	task.Constraints.Rubric[0] = "changed"
	if got := council.DefaultRubric(); got[0] != "correctness" {
		t.Errorf("DefaultRubric()[0] = %q after a task changed its rubric, want correctness", got[0])
	}
}

func TestParseBacklogReviewTaskID(t *testing.T) {
	good := []struct {
		id   string
		want council.BacklogReviewTaskID
	}{
		{"ceremony-c1:story-s1:role-DEV", council.BacklogReviewTaskID{Ceremony: "c1", Story: "s1", Role: "DEV"}},
		{"ceremony-2024-Q1:story-ST-42:role-QA", council.BacklogReviewTaskID{Ceremony: "2024-Q1", Story: "ST-42", Role: "QA"}},
		{"ceremony-x:story-y:role-DEVOPS_2", council.BacklogReviewTaskID{Ceremony: "x", Story: "y", Role: "DEVOPS_2"}},
	}
	for _, tt := range good {
		t.Run(tt.id, func(t *testing.T) {
			got, err := council.ParseBacklogReviewTaskID(tt.id)
			if err != nil {
				t.Fatalf("ParseBacklogReviewTaskID(%q) error = %v", tt.id, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	bad := []string{
		"", "task-1", "ceremony-c1:story-s1", "ceremony-c1:story-s1:role-dev", "ceremony-c1:story-s1:role-",
		"ceremony-:story-s1:role-DEV", "ceremony-c1:story-:role-DEV", "ceremony-c 1:story-s1:role-DEV",
		"ceremony-c1:story-s1:role-DEV:extra", "story-s1:ceremony-c1:role-DEV", " ceremony-c1:story-s1:role-DEV",
		"ceremony-c1:story-s1:role-1DEV",
	}
	for _, id := range bad {
		t.Run("bad/"+id, func(t *testing.T) {
			_, err := council.ParseBacklogReviewTaskID(id)
			if !errors.Is(err, council.ErrInvalid) {
				t.Fatalf("ParseBacklogReviewTaskID(%q) error = %v, want ErrInvalid", id, err)
			}
			if !strings.Contains(err.Error(), "ceremony-{id}:story-{id}:role-{ROLE}") {
				t.Errorf("error %q does not name the expected form", err)
			}
		})
	}
}

func TestKind(t *testing.T) {
	tests := []struct {
		kind              council.Kind
		valid, singlePass bool
	}{
		{council.KindDeliberation, true, false},
		{council.KindBacklogReview, true, false},
		{council.KindTaskExtraction, true, true},
		{council.KindTaskDerivation, true, true},
		{"other", false, false},
	}
	for _, tt := range tests {
		if got := tt.kind.Valid(); got != tt.valid {
			t.Errorf("%q.Valid() = %v, want %v", tt.kind, got, tt.valid)
		}
		if got := tt.kind.SinglePass(); got != tt.singlePass {
			t.Errorf("%q.SinglePass() = %v, want %v", tt.kind, got, tt.singlePass)
		}
	}
}

func TestValidAgentID(t *testing.T) {
	for id, want := range map[string]bool{
		"agent-1": true, "A_b": true, strings.Repeat("a", 64): true,
		"": false, strings.Repeat("a", 65): false, "a.b": false, "a*": false, "a>": false, "é": false,
	} {
		if got := council.ValidAgentID(id); got != want {
			t.Errorf("ValidAgentID(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestModelFor(t *testing.T) {
	task := council.Task{Model: "base"}
	if got := task.ModelFor(council.Agent{ID: "a"}); got != "base" {
		t.Errorf("ModelFor(no override) = %q, want base", got)
	}
	if got := task.ModelFor(council.Agent{ID: "a", Model: "big"}); got != "big" {
		t.Errorf("ModelFor(override) = %q, want big", got)
	}
}
