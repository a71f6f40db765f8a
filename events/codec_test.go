package events_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"

	"council.dev/events"
	"council.dev/shared/council"
)

const source = "council.dev/test"

var t0 = time.Date(2025, 11, 28, 10, 0, 0, 0, time.UTC)

func fullTask() council.Task {
	return council.Task{
		ID: "task-42", Description: "Design the rate limiter.", Role: "DEV", Kind: council.KindDeliberation,
		Constraints: council.Constraints{
			StoryID: "story-7", PlanID: "plan-3", Timeout: 90 * time.Second, MaxRetries: 1, Rounds: 2, Peers: 2,
			Rubric: []string{"correctness", "clarity"}, MaxTokens: 1024,
			Metadata: map[string]string{"task_type": "deliberation", "ceremony_id": "c-9"},
		},
		Agents: []council.Agent{
			{ID: "dev-1", Role: "DEV"},
			{ID: "qa-1", Role: "QA", Model: "council-large"},
			{ID: "arch-1", Role: "ARCHITECT", PromptTemplate: "Prefer boring technology."},
		},
		Model: "council-tiny", Backend: council.BackendFunctions,
	}
}

func TestRequestRoundTrip(t *testing.T) {
	never := fullTask()
	never.Constraints.MaxRetries = 0
	ray := fullTask()
	ray.Backend = council.BackendRay
	tests := []struct {
		name string
		task council.Task
	}{
		{"all fields", fullTask()},
		{"never retry", never},
		{"ray backend", ray},
		{"single pass, defaults", council.Task{ID: "x-1", Description: "Extract.", Role: "TASK_EXTRACTOR",
			Kind: council.KindTaskExtraction, Agents: []council.Agent{{ID: "extractor", Role: "TASK_EXTRACTOR"}}}},
		{"backlog review", council.Task{ID: "ceremony-c1:story-s7:role-QA", Description: "Review.", Role: "QA",
			Kind: council.KindBacklogReview, Constraints: council.Constraints{StoryID: "s7", MaxRetries: council.DefaultMaxRetries},
			Agents: []council.Agent{{ID: "qa-1", Role: "QA"}, {ID: "qa-2", Role: "QA"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := events.NewRequest(source, "req-1", tt.task, t0)
			if env.ID != "req-1" || env.Type != events.TypeDeliberationRequested || env.Subject != tt.task.ID || !env.Time.Equal(t0) {
				t.Errorf("envelope = %+v", env)
			}
			got, err := events.DecodeRequest(events.ToEvent(env))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.task.WithDefaults(), got); diff != "" {
				t.Errorf("decode(encode(task)) (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeRequestDefaults(t *testing.T) {
	e, err := events.LoadFixture("deliberation.requested.v1/valid/minimal.json")
	if err != nil {
		t.Fatal(err)
	}
	got, err := events.DecodeRequest(e)
	if err != nil {
		t.Fatal(err)
	}
	want := council.Task{
		ID: "extract-18", Description: "Extract tasks.", Role: "TASK_EXTRACTOR", Kind: council.KindTaskExtraction,
		Agents: []council.Agent{{ID: "extractor", Role: "TASK_EXTRACTOR"}},
		Constraints: council.Constraints{
			Timeout: council.DefaultTimeout, MaxRetries: council.DefaultMaxRetries,
			MaxTokens: council.DefaultMaxTokens, Rubric: council.DefaultRubric(),
			Protocol:    council.ProtocolCritiqueRevise,
			Aggregation: council.AggregationMean, FinalReview: council.FinalReviewAll,
		},
		Backend: council.BackendFunctions,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("absent fields do not take their defaults (-want +got):\n%s", diff)
	}

	e, err = events.LoadFixture("deliberation.requested.v1/valid/never_retry.json")
	if err != nil {
		t.Fatal(err)
	}
	got, err = events.DecodeRequest(e)
	if err != nil {
		t.Fatal(err)
	}
	if got.Constraints.MaxRetries != 0 {
		t.Errorf("explicit max_retries 0 decoded as %d, want 0 (never retry)", got.Constraints.MaxRetries)
	}
	if got.Constraints.Timeout != 600*time.Second {
		t.Errorf("timeout_seconds 600 decoded as %v", got.Constraints.Timeout)
	}
}

func TestTimeoutRoundsUpToWholeSeconds(t *testing.T) {
	task := fullTask()
	task.Constraints.Timeout = 1500 * time.Millisecond
	got, err := events.DecodeRequest(events.ToEvent(events.NewRequest(source, "r", task, t0)))
	if err != nil {
		t.Fatal(err)
	}
	if got.Constraints.Timeout != 2*time.Second {
		t.Errorf("timeout 1.5s travelled as %v, want 2s", got.Constraints.Timeout)
	}
}

func proposal(agent, role string, stage int, content string) council.Proposal {
	return council.Proposal{
		AgentID: agent, Role: role, Stage: stage, Content: content, Model: "council-tiny",
		Usage:    council.Usage{PromptTokens: 100, CompletionTokens: 50, TotalTokens: 150, CachedTokens: 40},
		Duration: 1234 * time.Millisecond, Attempt: 1,
	}
}

func critique(reviewer, author string, stage int, overall float64, rubric []string) council.Critique {
	c := council.Critique{
		ReviewerID: reviewer, AuthorID: author, Stage: stage, Scores: map[string]float64{}, Overall: overall,
		Strengths: []string{"clear"}, Issues: []string{"vague on " + author}, Suggestions: []string{"add numbers"},
		Model: "council-tiny", Usage: council.Usage{PromptTokens: 200, CompletionTokens: 40, TotalTokens: 240},
		Duration: 800 * time.Millisecond, Attempt: 1,
	}
	for _, r := range rubric {
		c.Scores[r] = overall
	}
	return c
}

func TestWorkRoundTrip(t *testing.T) {
	task := fullTask().WithDefaults()
	prev := proposal("dev-1", "DEV", 0, "first")
	prev.Reasoning = "because"
	crit := critique("qa-1", "dev-1", 0, 0.5, task.Constraints.Rubric)
	bare := council.Critique{ReviewerID: "qa-1", AuthorID: "dev-1", Overall: 1, Attempt: 1}

	for _, r := range []council.ProposalRequest{
		{DeliberationID: "dlb-1", Key: "p.0.dev-1", Task: task, Agent: task.Agents[0], Stage: 0, Attempt: 1},
		{DeliberationID: "dlb-1", Key: "p.1.dev-1", Task: task, Agent: task.Agents[0], Stage: 1, Attempt: 3,
			Previous: &prev, Critiques: []council.Critique{crit, bare}},
	} {
		env := events.NewProposalRequested(source, r, t0)
		if want := fmt.Sprintf("dlb-1.%s.%d", r.Key, r.Attempt); env.ID != want {
			t.Errorf("proposal.requested id = %q, want %q", env.ID, want)
		}
		got, err := events.DecodeProposalRequested(events.ToEvent(env))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(r, got); diff != "" {
			t.Errorf("proposal request round trip (-want +got):\n%s", diff)
		}

		p := proposal("dev-1", "DEV", r.Stage, "content")
		p.Attempt, p.StartedAt = r.Attempt, t0.Add(-3*time.Second)
		env = events.NewProposalGenerated(source, r, p, t0)
		if want := fmt.Sprintf("dlb-1.%s.%d.generated", r.Key, r.Attempt); env.ID != want {
			t.Errorf("proposal.generated id = %q, want %q", env.ID, want)
		}
		id, key, gotP, err := events.DecodeProposalGenerated(events.ToEvent(env))
		if err != nil {
			t.Fatal(err)
		}
		if id != r.DeliberationID || key != r.Key {
			t.Errorf("proposal.generated = %s/%s, want %s/%s", id, key, r.DeliberationID, r.Key)
		}
		if diff := cmp.Diff(p, gotP); diff != "" {
			t.Errorf("proposal round trip (-want +got):\n%s", diff)
		}
	}

	cr := council.CritiqueRequest{DeliberationID: "dlb-1", Key: "c.0.dev-1.qa-1", Task: task, Reviewer: task.Agents[1],
		Proposal: prev, Stage: 0, Attempt: 2}
	env := events.NewCritiqueRequested(source, cr, t0)
	if env.ID != "dlb-1.c.0.dev-1.qa-1.2" || env.Subject != "task-42" {
		t.Errorf("critique.requested id, subject = %q, %q", env.ID, env.Subject)
	}
	gotCR, err := events.DecodeCritiqueRequested(events.ToEvent(env))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(cr, gotCR); diff != "" {
		t.Errorf("critique request round trip (-want +got):\n%s", diff)
	}

	// started_at round trips; an answer without it decodes with zero.
	started := crit
	started.StartedAt = t0.Add(-2 * time.Second)
	for _, c := range []council.Critique{crit, bare, started} {
		env = events.NewCritiqueCompleted(source, cr, c, t0)
		if env.ID != "dlb-1.c.0.dev-1.qa-1.2.completed" {
			t.Errorf("critique.completed id = %q", env.ID)
		}
		if strings.Contains(string(env.Data), "null") {
			t.Errorf("critique.completed data has a null: %s", env.Data)
		}
		id, key, gotC, err := events.DecodeCritiqueCompleted(events.ToEvent(env))
		if err != nil {
			t.Fatal(err)
		}
		if id != "dlb-1" || key != cr.Key {
			t.Errorf("critique.completed = %s/%s", id, key)
		}
		if diff := cmp.Diff(c, gotC); diff != "" {
			t.Errorf("critique round trip (-want +got):\n%s", diff)
		}
	}
}

func TestWorkFailureRoundTrip(t *testing.T) {
	task := fullTask().WithDefaults()
	pr := council.ProposalRequest{DeliberationID: "dlb-1", Key: "p.0.qa-1", Task: task, Agent: task.Agents[1], Attempt: 2}
	cr := council.CritiqueRequest{DeliberationID: "dlb-1", Key: "c.1.dev-1.arch-1", Task: task, Reviewer: task.Agents[2], Stage: 1, Attempt: 1}
	tests := []struct {
		name string
		env  council.Envelope
		want events.WorkFailure
		id   string
	}{
		{"proposal, transient", events.NewProposalFailed(source, pr, council.Unavailablef("vllm: 503"), t0),
			events.WorkFailure{DeliberationID: "dlb-1", Key: "p.0.qa-1", AgentID: "qa-1", Error: "unavailable: vllm: 503", Attempt: 2, Retryable: true},
			"dlb-1.p.0.qa-1.2.failed"},
		{"proposal, permanent", events.NewProposalFailed(source, pr, council.Invalidf("model not allowed"), t0),
			events.WorkFailure{DeliberationID: "dlb-1", Key: "p.0.qa-1", AgentID: "qa-1", Error: "invalid: model not allowed", Attempt: 2},
			"dlb-1.p.0.qa-1.2.failed"},
		{"proposal, unclassified is transient", events.NewProposalFailed(source, pr, errors.New("boom"), t0),
			events.WorkFailure{DeliberationID: "dlb-1", Key: "p.0.qa-1", AgentID: "qa-1", Error: "boom", Attempt: 2, Retryable: true},
			"dlb-1.p.0.qa-1.2.failed"},
		{"proposal, nil error", events.NewProposalFailed(source, pr, nil, t0),
			events.WorkFailure{DeliberationID: "dlb-1", Key: "p.0.qa-1", AgentID: "qa-1", Error: "unknown error", Attempt: 2},
			"dlb-1.p.0.qa-1.2.failed"},
		{"critique, bad output", events.NewCritiqueFailed(source, cr, fmt.Errorf("critique: %w", council.ErrBadOutput), t0),
			events.WorkFailure{DeliberationID: "dlb-1", Key: "c.1.dev-1.arch-1", AgentID: "arch-1", Error: "critique: bad model output", Attempt: 1, Stage: 1, Retryable: true},
			"dlb-1.c.1.dev-1.arch-1.1.failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env.ID != tt.id {
				t.Errorf("id = %q, want %q", tt.env.ID, tt.id)
			}
			got, err := events.DecodeWorkFailure(events.ToEvent(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestLongErrorsAreCut(t *testing.T) {
	task := fullTask().WithDefaults()
	pr := council.ProposalRequest{DeliberationID: "dlb-1", Key: "p.0.qa-1", Task: task, Agent: task.Agents[1], Attempt: 1}
	long := errors.New(strings.Repeat("é", events.MaxErrorBytes))
	got, err := events.DecodeWorkFailure(events.ToEvent(events.NewProposalFailed(source, pr, long, t0)))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Error) > events.MaxErrorBytes+len("…") || !utf8.ValidString(got.Error) || !strings.HasSuffix(got.Error, "…") {
		t.Errorf("error of %d bytes was not cut cleanly: %d bytes, valid UTF-8 %v", len(long.Error()), len(got.Error), utf8.ValidString(got.Error))
	}
}

// deliver encodes env as the wire would carry it: an sdk event marshalled
// to structured JSON and read back.
func deliver(t *testing.T, env council.Envelope) event.Event {
	t.Helper()
	ev := events.ToEvent(env)
	if err := ev.Validate(); err != nil {
		t.Fatalf("ToEvent(%s) is not a valid CloudEvent: %v", env.Type, err)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "data_base64") {
		t.Errorf("%s: data is base64 on the wire: %s", env.Type, b)
	}
	var back event.Event
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	return back
}

// run drives a deliberation of task through the codec only: every piece
// of work travels as a request event, is answered by a fake agent and
// comes back as a result event. Every envelope is checked against the
// schema of its type.
func run(t *testing.T, task council.Task, answer func(r council.ProposalRequest) (council.Proposal, error)) *council.Deliberation {
	t.Helper()
	req, err := events.DecodeRequest(deliver(t, events.NewRequest("council.dev/orchestrator", "req-1", task, t0)))
	if err != nil {
		t.Fatal(err)
	}
	d, err := council.New(council.DeliberationID("council.dev/orchestrator", "req-1"), req, t0)
	if err != nil {
		t.Fatal(err)
	}
	check := func(env council.Envelope) event.Event {
		t.Helper()
		if err := validateData(t, compileSchema(t, env.Type), env.Data); err != nil {
			t.Errorf("%s (%s) does not match its schema: %v\n%s", env.Type, env.ID, err, env.Data)
		}
		return deliver(t, env)
	}
	accepted, err := events.DecodeAccepted(check(events.NewAccepted("council.dev/execute", d, t0)))
	if err != nil {
		t.Fatal(err)
	}
	if accepted.DeliberationID != d.ID || accepted.Status != "running" || accepted.Backend != "functions" {
		t.Errorf("accepted = %+v", accepted)
	}
	now := t0
	for step := 0; len(d.Outbox) > 0 && step < 100; step++ {
		key := d.Outbox[0]
		d.Acknowledge(key)
		if key == council.OutboxCompleted || key == council.OutboxFailed {
			continue
		}
		now = now.Add(time.Second)
		w := d.Work[key]
		switch w.Kind {
		case council.WorkProposal:
			want, err := d.ProposalRequest(key)
			if err != nil {
				t.Fatal(err)
			}
			r, err := events.DecodeProposalRequested(check(events.NewProposalRequested("council.dev/execute", want, now)))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, r); diff != "" {
				t.Fatalf("proposal request %s changed on the wire (-want +got):\n%s", key, diff)
			}
			p, perr := answer(r)
			if perr != nil {
				f, err := events.DecodeWorkFailure(check(events.NewProposalFailed("council.dev/generate", r, perr, now)))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := d.RecordFailure(f.Key, f.Attempt, f.Error, f.Retryable, now); err != nil {
					t.Fatal(err)
				}
				continue
			}
			id, k, got, err := events.DecodeProposalGenerated(check(events.NewProposalGenerated("council.dev/generate", r, p, now)))
			if err != nil {
				t.Fatal(err)
			}
			if id != d.ID {
				t.Fatalf("proposal for %s, want %s", id, d.ID)
			}
			if _, err := d.RecordProposal(k, got, now); err != nil {
				t.Fatal(err)
			}
		case council.WorkCritique:
			want, err := d.CritiqueRequest(key)
			if err != nil {
				t.Fatal(err)
			}
			r, err := events.DecodeCritiqueRequested(check(events.NewCritiqueRequested("council.dev/execute", want, now)))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, r); diff != "" {
				t.Fatalf("critique request %s changed on the wire (-want +got):\n%s", key, diff)
			}
			// Reviewers like arch-1's proposals best.
			overall := 0.5
			if r.Proposal.AgentID == "arch-1" {
				overall = 0.9
			}
			c := critique(r.Reviewer.ID, r.Proposal.AgentID, r.Stage, overall, r.Task.Constraints.Rubric)
			_, k, got, err := events.DecodeCritiqueCompleted(check(events.NewCritiqueCompleted("council.dev/critique", r, c, now)))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := d.RecordCritique(k, got, now); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !d.Status.Terminal() {
		t.Fatalf("deliberation did not end: %+v", d)
	}
	return d
}

func TestDeliberationThroughTheCodec(t *testing.T) {
	task := fullTask()
	task.Constraints.Rounds = 1
	d := run(t, task, func(r council.ProposalRequest) (council.Proposal, error) {
		if r.Stage > 0 && (r.Previous == nil || len(r.Critiques) == 0) {
			t.Errorf("revision %s without its previous proposal or critiques", r.Key)
		}
		p := proposal(r.Agent.ID, r.Agent.Role, r.Stage, fmt.Sprintf("%s at stage %d", r.Agent.ID, r.Stage))
		p.Attempt = r.Attempt
		return p, nil
	})
	if d.Status != council.StatusCompleted {
		t.Fatalf("status %s: %s", d.Status, d.Reason)
	}
	env := events.NewCompleted("council.dev/execute", d, t0)
	if env.ID != d.ID+".completed" || env.Subject != "task-42" {
		t.Errorf("completed id, subject = %q, %q", env.ID, env.Subject)
	}
	if err := validateData(t, compileSchema(t, env.Type), env.Data); err != nil {
		t.Errorf("completed does not match its schema: %v", err)
	}
	got, err := events.DecodeCompleted(deliver(t, env))
	if err != nil {
		t.Fatal(err)
	}
	if got.Winner != "arch-1" || len(got.Ranking) != 3 || got.Ranking[0].Rank != 1 || got.Ranking[0].Proposal.AgentID != "arch-1" {
		t.Errorf("winner %q, ranking %+v", got.Winner, got.Ranking)
	}
	if len(got.History) != 3 || len(got.Reviews) != 6 {
		t.Errorf("history %d proposals, reviews %d critiques; want 3 and 6", len(got.History), len(got.Reviews))
	}
	if diff := cmp.Diff(task.Constraints.Metadata, got.Metadata); diff != "" {
		t.Errorf("metadata not carried through (-want +got):\n%s", diff)
	}
	if got.Output != nil {
		t.Errorf("output %s for a plain deliberation", got.Output)
	}
	want := events.Completed{
		DeliberationID: d.ID, TaskID: "task-42", Kind: "deliberation", Backend: "functions", Status: "completed",
		Usage:      events.Usage{PromptTokens: 6*100 + 12*200, CompletionTokens: 6*50 + 12*40, TotalTokens: 6*150 + 12*240, CachedTokens: 6 * 40},
		DurationMS: d.FinishedAt.Sub(t0).Milliseconds(), StartedAt: t0, FinishedAt: d.FinishedAt,
		Calls: 18, // 3 × (1 + 2 peers) per stage, two stages
		// 240 of 3000 prompt tokens cached; the byte share as measured.
		PromptCache: events.PromptCache{CachedTokenShare: 0.08, SharedPrefixShare: d.Result.PromptCache.SharedPrefixShare},
		Protocol:    "critique_revise", RoundsRun: 1,
		// Every reviewer orders the proposals alike: W = 1.
		Aggregation: "mean", Agreement: &one,
	}
	if s := got.PromptCache.SharedPrefixShare; s <= 0 || s >= 1 {
		t.Errorf("shared prefix share %v, want in (0, 1): every prompt opens with the task", s)
	}
	if diff := cmp.Diff(want, got, ignoreLists); diff != "" {
		t.Errorf("completed (-want +got):\n%s", diff)
	}
}

var one = 1.0

var ignoreLists = cmp.FilterPath(func(p cmp.Path) bool {
	switch p.Last().String() {
	case ".Ranking", ".History", ".Reviews", ".Failures", ".Metadata", ".Winner":
		return true
	}
	return false
}, cmp.Ignore())

func TestStructuredOutput(t *testing.T) {
	task := council.Task{ID: "derive-1", Description: "Derive tasks.", Role: "ARCHITECT", Kind: council.KindTaskDerivation,
		Constraints: council.Constraints{PlanID: "plan-3", Metadata: map[string]string{"task_type": "task_derivation"}},
		Agents:      []council.Agent{{ID: "deriver", Role: "ARCHITECT"}}}
	content := "\n{ \"tasks\": [ {\"title\": \"A\", \"description\": \"B\", \"role\": \"DEV\", \"estimated_hours\": 2, \"priority\": 1} ] }\n"
	d := run(t, task, func(r council.ProposalRequest) (council.Proposal, error) {
		return proposal(r.Agent.ID, r.Agent.Role, r.Stage, content), nil
	})
	got, err := events.DecodeCompleted(deliver(t, events.NewCompleted("council.dev/execute", d, t0)))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"tasks":[{"title":"A","description":"B","role":"DEV","estimated_hours":2,"priority":1}]}`
	if string(got.Output) != want {
		t.Errorf("output = %s, want %s", got.Output, want)
	}
	if got.Kind != "task_derivation" || got.Winner != "deriver" || got.Ranking[0].Scored {
		t.Errorf("completed = %+v", got)
	}

	// Content that is not JSON gives no output.
	d = run(t, task, func(r council.ProposalRequest) (council.Proposal, error) {
		return proposal(r.Agent.ID, r.Agent.Role, r.Stage, "tasks: A, B"), nil
	})
	got, err = events.DecodeCompleted(deliver(t, events.NewCompleted("council.dev/execute", d, t0)))
	if err != nil {
		t.Fatal(err)
	}
	if got.Output != nil {
		t.Errorf("output = %s for content that is not JSON", got.Output)
	}
}

func TestFailedDeliberation(t *testing.T) {
	task := fullTask()
	task.Constraints.MaxRetries = 1
	d := run(t, task, func(r council.ProposalRequest) (council.Proposal, error) {
		return council.Proposal{}, council.Unavailablef("connection refused")
	})
	if d.Status != council.StatusFailed {
		t.Fatalf("status %s", d.Status)
	}
	env := events.NewFailed("council.dev/execute", d, t0)
	if env.ID != d.ID+".failed" {
		t.Errorf("failed id = %q", env.ID)
	}
	if err := validateData(t, compileSchema(t, env.Type), env.Data); err != nil {
		t.Errorf("failed does not match its schema: %v", err)
	}
	got, err := events.DecodeFailed(deliver(t, env))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got.Reason, "all agents failed") || len(got.Failures) != 3 || got.Status != "failed" {
		t.Errorf("failed = %+v", got)
	}
	for _, f := range got.Failures {
		if !strings.Contains(f.Reason, "after 2 attempt(s)") {
			t.Errorf("failure %+v: want 2 attempts (max_retries 1)", f)
		}
	}
	if diff := cmp.Diff(task.Constraints.Metadata, got.Metadata); diff != "" {
		t.Errorf("metadata (-want +got):\n%s", diff)
	}

	// A timeout keeps the usage of the calls that were made.
	d, err = council.New("dlb-2", fullTask(), t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.RecordProposal(council.ProposalKey(0, "dev-1"), proposal("dev-1", "DEV", 0, "x"), t0); err != nil {
		t.Fatal(err)
	}
	d.Tick(t0.Add(time.Hour))
	f, err := events.DecodeFailed(deliver(t, events.NewFailed("council.dev/execute", d, t0.Add(time.Hour))))
	if err != nil {
		t.Fatal(err)
	}
	if f.Usage.TotalTokens != 150 || f.DurationMS != time.Hour.Milliseconds() || !strings.HasPrefix(f.Reason, "timeout") {
		t.Errorf("timeout failed = %+v", f)
	}
}

func TestAcceptedAndTick(t *testing.T) {
	d, err := council.New("dlb-3", fullTask(), t0)
	if err != nil {
		t.Fatal(err)
	}
	d.Task.Backend = council.BackendRay
	a, err := events.DecodeAccepted(deliver(t, events.NewAccepted("council.dev/execute", d, t0)))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(events.Accepted{DeliberationID: "dlb-3", TaskID: "task-42", Status: "running", Backend: "ray"}, a); diff != "" {
		t.Errorf("accepted (-want +got):\n%s", diff)
	}

	env := events.NewTick("council.dev/sweep", "tick-1", t0)
	if env.Subject != "" || env.ID != "tick-1" || env.Type != events.TypeSweepTick {
		t.Errorf("tick envelope = %+v", env)
	}
	at, err := events.DecodeTick(deliver(t, env))
	if err != nil || !at.Equal(t0) {
		t.Errorf("DecodeTick = %v, %v; want %v", at, err, t0)
	}
	ping := event.New()
	ping.SetID("p")
	ping.SetSource("/apis/v1/namespaces/council/pingsources/sweep")
	ping.SetType(events.TypePing)
	ping.SetTime(t0)
	_ = ping.SetData("text/plain", "whatever the PingSource says")
	if at, err := events.DecodeTick(ping); err != nil || !at.Equal(t0) {
		t.Errorf("DecodeTick(ping) = %v, %v", at, err)
	}
	empty := events.ToEvent(council.Envelope{ID: "t", Type: events.TypeSweepTick, Source: "s", Time: t0, Data: []byte(`{}`)})
	if at, err := events.DecodeTick(empty); err != nil || !at.Equal(t0) {
		t.Errorf("DecodeTick({}) = %v, %v; want the event time", at, err)
	}
	other := events.ToEvent(council.Envelope{ID: "t", Type: events.TypeProposalFailed, Source: "s", Data: []byte(`{}`)})
	if _, err := events.DecodeTick(other); !errors.Is(err, council.ErrInvalid) {
		t.Errorf("DecodeTick(proposal.failed) error = %v, want ErrInvalid", err)
	}
	if _, err := events.DecodeWorkFailure(events.ToEvent(env)); !errors.Is(err, council.ErrInvalid) {
		t.Errorf("DecodeWorkFailure(tick) error = %v, want ErrInvalid", err)
	}
}

func TestToEvent(t *testing.T) {
	env := council.Envelope{ID: "id-1", Type: events.TypeSweepTick, Source: "council.dev/x", Subject: "task-1", Time: t0,
		Data: []byte(`{"at":"2025-11-28T10:00:00Z"}`)}
	ev := events.ToEvent(env)
	if err := ev.Validate(); err != nil {
		t.Fatal(err)
	}
	got := map[string]any{
		"specversion": ev.SpecVersion(), "id": ev.ID(), "type": ev.Type(), "source": ev.Source(), "subject": ev.Subject(),
		"time": ev.Time(), "datacontenttype": ev.DataContentType(), "data": string(ev.Data()), "base64": ev.DataBase64,
	}
	want := map[string]any{
		"specversion": "1.0", "id": "id-1", "type": events.TypeSweepTick, "source": "council.dev/x", "subject": "task-1",
		"time": t0, "datacontenttype": "application/json", "data": string(env.Data), "base64": false,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ToEvent (-want +got):\n%s", diff)
	}
	env.Data[0] = '['
	if ev.Data()[0] != '{' {
		t.Error("ToEvent shares the envelope's data")
	}
	bare := events.ToEvent(council.Envelope{ID: "id-2", Type: events.TypeSweepTick, Source: "s"})
	if err := bare.Validate(); err != nil || bare.Subject() != "" || !bare.Time().IsZero() || bare.Data() != nil {
		t.Errorf("ToEvent(bare) = %v, %v", bare, err)
	}
}

func TestEncodersNeverWriteNull(t *testing.T) {
	task := council.Task{ID: "t", Kind: council.KindDeliberation}
	d := &council.Deliberation{ID: "dlb", Task: task}
	pr := council.ProposalRequest{DeliberationID: "dlb", Key: "k", Task: task}
	cr := council.CritiqueRequest{DeliberationID: "dlb", Key: "k", Task: task}
	for _, env := range []council.Envelope{
		events.NewCompleted(source, d, t0), events.NewFailed(source, d, t0), events.NewAccepted(source, d, t0),
		events.NewProposalRequested(source, pr, t0), events.NewCritiqueRequested(source, cr, t0),
		events.NewCritiqueCompleted(source, cr, council.Critique{}, t0),
	} {
		if strings.Contains(string(env.Data), "null") {
			t.Errorf("%s: data has a null: %s", env.Type, env.Data)
		}
	}
}

func TestNonFiniteScoresAreEncodable(t *testing.T) {
	task := fullTask().WithDefaults()
	cr := council.CritiqueRequest{DeliberationID: "dlb-1", Key: "c.0.dev-1.qa-1", Task: task, Reviewer: task.Agents[1], Attempt: 1,
		Proposal: proposal("dev-1", "DEV", 0, "x")}
	c := critique("qa-1", "dev-1", 0, 0.5, task.Constraints.Rubric)
	c.Overall = nan()
	c.Scores["clarity"] = nan()
	env := events.NewCritiqueCompleted(source, cr, c, t0)
	if len(env.Data) == 0 {
		t.Fatal("a NaN score made the data empty")
	}
	if _, _, _, err := events.DecodeCritiqueCompleted(events.ToEvent(env)); err != nil {
		t.Errorf("decode: %v", err)
	}
}

func nan() float64 { var z float64; return z / z }

// garbage is data no decoder may accept; none may panic on it.
var garbage = map[string]string{
	"empty":             "",
	"spaces":            "   \n\t ",
	"not JSON":          "hello, council",
	"JSON array":        `[{"task_id":"t"}]`,
	"JSON null":         "null",
	"JSON number":       "42",
	"JSON string":       `"{}"`,
	"JSON true":         "true",
	"truncated":         `{"task_id": "t", "description": `,
	"trailing object":   `{} {}`,
	"trailing garbage":  `{}x`,
	"deeply nested":     `{"task_id":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`,
	"deep object":       strings.Repeat(`{"a":`, 20000) + "1" + strings.Repeat("}", 20000),
	"unknown field":     `{"surprise": 1}`,
	"huge number":       `{"attempt": 1e400}`,
	"wrong casing only": `{"Deliberation_ID": "x"}`,
	"invalid UTF-8":     "{\"task_id\": \"\xff\xfe\"",
	"control character": "{\"key\": \"a\x01b\"}",
}

func TestGarbageDataIsInvalid(t *testing.T) {
	for typ, decode := range decoders {
		if typ == events.TypePing {
			continue
		}
		for name, data := range garbage {
			if typ == events.TypeSweepTick && strings.TrimSpace(data) == "" {
				continue // a tick without data is a tick
			}
			t.Run(events.ShortName(typ)+"/"+name, func(t *testing.T) {
				e := event.New()
				e.SetID("g")
				e.SetSource("test")
				e.SetType(typ)
				e.SetDataContentType(event.ApplicationJSON)
				e.DataEncoded = []byte(data)
				err := decode(e)
				if !errors.Is(err, council.ErrInvalid) {
					t.Fatalf("error = %v, want one wrapping council.ErrInvalid", err)
				}
				if !strings.Contains(err.Error(), typ) {
					t.Errorf("error %q does not name the event type", err)
				}
			})
		}
	}
}

func TestWrongEventTypeIsInvalid(t *testing.T) {
	e, err := events.LoadFixture("proposal.generated.v1/valid/generated.json")
	if err != nil {
		t.Fatal(err)
	}
	for typ, decode := range decoders {
		if typ == events.TypeProposalGenerated || typ == events.TypePing {
			continue
		}
		if err := decode(e); !errors.Is(err, council.ErrInvalid) || !strings.Contains(err.Error(), "event type") {
			t.Errorf("%s decoder on a proposal.generated event: error = %v", typ, err)
		}
	}
}

func TestContentTypeWithParameters(t *testing.T) {
	e, err := events.LoadFixture("proposal.generated.v1/valid/generated.json")
	if err != nil {
		t.Fatal(err)
	}
	e.SetDataContentType("application/json; charset=utf-8")
	if _, _, _, err := events.DecodeProposalGenerated(e); err != nil {
		t.Errorf("application/json with a charset: %v", err)
	}
	e.SetDataContentType("")
	if _, _, _, err := events.DecodeProposalGenerated(e); err != nil {
		t.Errorf("no datacontenttype: %v", err)
	}
	e.SetDataContentType("application/xml")
	if _, _, _, err := events.DecodeProposalGenerated(e); !errors.Is(err, council.ErrInvalid) {
		t.Errorf("application/xml: error = %v", err)
	}
}

// FuzzDecodeRequest feeds arbitrary data to every inbound decoder: none
// may panic, every error wraps ErrInvalid, and an accepted request
// survives another encode → decode unchanged.
func FuzzDecodeRequest(f *testing.F) {
	for _, name := range []string{"deliberation", "backlog_review", "task_extraction", "task_derivation", "ray_backend", "minimal"} {
		e, err := events.LoadFixture("deliberation.requested.v1/valid/" + name + ".json")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(e.Data())
	}
	for _, g := range garbage {
		f.Add([]byte(g))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for typ, decode := range decoders {
			if typ == events.TypePing {
				continue
			}
			e := event.New()
			e.SetID("f")
			e.SetSource("fuzz")
			e.SetType(typ)
			e.DataEncoded = data
			if err := decode(e); err != nil && !errors.Is(err, council.ErrInvalid) {
				t.Fatalf("%s: error %v does not wrap ErrInvalid", typ, err)
			}
		}
		e := event.New()
		e.SetID("f")
		e.SetSource("fuzz")
		e.SetType(events.TypeDeliberationRequested)
		e.DataEncoded = data
		task, err := events.DecodeRequest(e)
		if err != nil {
			return
		}
		again, err := events.DecodeRequest(events.ToEvent(events.NewRequest("fuzz", "f", task, t0)))
		if err != nil {
			t.Fatalf("re-encoded request rejected: %v", err)
		}
		if diff := cmp.Diff(task, again); diff != "" {
			t.Fatalf("request changed on re-encoding (-first +second):\n%s", diff)
		}
	})
}
