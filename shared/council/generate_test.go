package council_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

var ctx = context.Background()

func proposalRequest(t *testing.T, task council.Task, key string) council.ProposalRequest {
	t.Helper()
	d := newDeliberation(t, task)
	r, err := d.ProposalRequest(key)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// ignoreFuncs lets cmp compare requests that carry an OnToken func.
var ignoreFuncs = cmpopts.IgnoreFields(council.CompletionRequest{}, "OnToken")

func TestGenerateRequest(t *testing.T) {
	task := counciltest.Task()
	task.Agents[2].Model = "council-big"
	task.Constraints.MaxTokens = 333
	seed := func(r council.CompletionRequest) int64 { return *r.Seed }
	tests := []struct {
		name string
		task council.Task
		key  string
		want council.CompletionRequest
	}{
		// Temperatures spread over 0.7, 0.8, 0.9, 1.0 by the agent's id
		// (FNV-1a mod 4), not its place in the task: a call's request
		// carries its own agent only.
		{"an agent uses the task model", task, "p.0." + archi,
			council.CompletionRequest{Model: "council-tiny", Temperature: 0.7 + 0.1*2, MaxTokens: 333}},
		{"another agent samples at another temperature", task, "p.0." + qa,
			council.CompletionRequest{Model: "council-tiny", Temperature: 0.7 + 0.1*1, MaxTokens: 333}},
		{"agent model override", task, "p.0." + devops,
			council.CompletionRequest{Model: "council-big", Temperature: 0.7 + 0.1*2, MaxTokens: 333}},
		{"single pass is greedy with a schema", taskOf(council.KindTaskDerivation), "p.0.extractor",
			func() council.CompletionRequest {
				s, _ := council.StructuredSchema(council.KindTaskDerivation)
				return council.CompletionRequest{Model: "council-tiny", Temperature: 0, MaxTokens: council.DefaultMaxTokens, Schema: &s}
			}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			llm := &counciltest.Completer{}
			r := proposalRequest(t, tt.task, tt.key)
			if _, err := council.Generate(ctx, llm, r, nil); err != nil {
				t.Fatalf("Generate: %v", err)
			}
			if _, err := council.Generate(ctx, llm, r, nil); err != nil {
				t.Fatal(err)
			}
			reqs := llm.Requests()
			if len(reqs) != 2 {
				t.Fatalf("%d requests, want 2", len(reqs))
			}
			got := reqs[0]
			if got.Seed == nil {
				t.Fatal("no seed")
			}
			if seed(reqs[0]) != seed(reqs[1]) {
				t.Errorf("seed differs between identical requests: %d, %d", seed(reqs[0]), seed(reqs[1]))
			}
			want := tt.want
			want.Messages = council.ProposalMessages(r)
			want.Seed = got.Seed
			if diff := cmp.Diff(want, got, ignoreFuncs, approx); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGenerateSeedsDifferPerAgentAndStage(t *testing.T) {
	seeds := map[int64]string{}
	task := counciltest.Task()
	d := newDeliberation(t, task)
	send(d) // the proposal requests
	for _, a := range []string{archi, qa, devops} {
		recordProposal(t, d, "p.0."+a, prop(a, 0), t0)
	}
	for _, k := range send(d) {
		recordCritique(t, d, k, crit(d.Work[k].AgentID, 0.5), t0)
	}
	for _, key := range []string{"p.0." + archi, "p.0." + qa, "p.1." + archi, "p.1." + qa} {
		llm := &counciltest.Completer{}
		r, err := d.ProposalRequest(key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := council.Generate(ctx, llm, r, nil); err != nil {
			t.Fatal(err)
		}
		s := *llm.Requests()[0].Seed
		if other, ok := seeds[s]; ok {
			t.Errorf("%s and %s share seed %d", key, other, s)
		}
		seeds[s] = key
	}
}

func TestGenerateResult(t *testing.T) {
	r := proposalRequest(t, counciltest.Task(), "p.0."+qa)
	r.Attempt = 2
	llm := &counciltest.Completer{CompleteFunc: func(context.Context, council.CompletionRequest) (council.Completion, error) {
		return council.Completion{Content: "my plan", Reasoning: "thinking", Model: "served-model", Usage: usageP}, nil
	}}
	got, err := council.Generate(ctx, llm, r, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := council.Proposal{AgentID: qa, Role: "QA", Stage: 0, Content: "my plan", Reasoning: "thinking", Model: "served-model", Usage: usageP, Attempt: 2}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(council.Proposal{}, "Duration")); diff != "" {
		t.Errorf("proposal (-want +got):\n%s", diff)
	}
	if got.Duration < 0 {
		t.Errorf("duration = %v", got.Duration)
	}
}

func TestGenerateErrors(t *testing.T) {
	answer := func(content string, err error) *counciltest.Completer {
		return &counciltest.Completer{CompleteFunc: func(context.Context, council.CompletionRequest) (council.Completion, error) {
			return council.Completion{Content: content}, err
		}}
	}
	plain := counciltest.Task()
	structured := taskOf(council.KindTaskExtraction)
	tests := []struct {
		name      string
		task      council.Task
		key       string
		llm       council.Completer
		is        error
		retryable bool
		want      string
	}{
		{"unavailable server", plain, "p.0." + qa, answer("", council.Unavailablef("HTTP 503")), council.ErrUnavailable, true, "generate p.0." + qa + ": unavailable: HTTP 503"},
		{"rejected request", plain, "p.0." + qa, answer("", council.Invalidf("model not allowed")), council.ErrInvalid, false, "generate p.0." + qa},
		{"empty completion", plain, "p.0." + qa, answer(" \n\t", nil), council.ErrBadOutput, true, "empty completion"},
		{"structured output is not JSON", structured, "p.0.extractor", answer("Here are the tasks: 1. x", nil), council.ErrBadOutput, true, "structured output is not a JSON object"},
		{"structured output is a JSON array", structured, "p.0.extractor", answer(`[{"title":"x"}]`, nil), council.ErrBadOutput, true, "not a JSON object"},
		{"structured output is JSON null", structured, "p.0.extractor", answer(`null`, nil), council.ErrBadOutput, true, "not a JSON object"},
		{"structured output is empty", structured, "p.0.extractor", answer("", nil), council.ErrBadOutput, true, "generate p.0.extractor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := council.Generate(ctx, tt.llm, proposalRequest(t, tt.task, tt.key), nil)
			if !errors.Is(err, tt.is) {
				t.Fatalf("Generate error = %v, want one wrapping %v", err, tt.is)
			}
			if got := council.Retryable(err); got != tt.retryable {
				t.Errorf("Retryable(%v) = %v, want %v", err, got, tt.retryable)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
	if _, err := council.Generate(ctx, answer(`{"tasks":[]}`, nil), proposalRequest(t, structured, "p.0.extractor"), nil); err != nil {
		t.Errorf("Generate(structured JSON object) error = %v, want nil", err)
	}
}

func TestGenerateStreamsTokens(t *testing.T) {
	sink := &counciltest.TokenSink{}
	onToken, finish := council.TokenStream(ctx, sink, "dlb-test", qa, 1, 1, nil)
	p, err := council.Generate(ctx, &counciltest.Completer{}, proposalRequest(t, counciltest.Task(), "p.0."+qa), onToken)
	finish()
	if err != nil {
		t.Fatal(err)
	}
	chunks := sink.Chunks()
	if len(chunks) < 3 {
		t.Fatalf("%d chunks, want the streamed words and a final chunk", len(chunks))
	}
	var text strings.Builder
	for i, c := range chunks {
		if c.Seq != i+1 || c.DeliberationID != "dlb-test" || c.AgentID != qa || c.Stage != 1 {
			t.Errorf("chunk %d = %+v, want seq %d of dlb-test/%s stage 1", i, c, i+1, qa)
		}
		if last := i == len(chunks)-1; c.Final != last || (last && c.Text != "") {
			t.Errorf("chunk %d = %+v; only the last chunk is final, with no text", i, c)
		}
		text.WriteString(c.Text)
	}
	if text.String() != p.Content {
		t.Errorf("streamed text %q, want the proposal %q", text.String(), p.Content)
	}
}

type failingSink struct{}

func (failingSink) PublishToken(context.Context, council.TokenChunk) error {
	return council.Unavailablef("nats down")
}

func TestTokenStream(t *testing.T) {
	t.Run("no sink", func(t *testing.T) {
		onToken, finish := council.TokenStream(ctx, nil, "dlb", "a", 0, 1, nil)
		if onToken != nil {
			t.Error("onToken is not nil without a sink: the completion would be streamed for nothing")
		}
		finish() // must not panic
	})
	t.Run("publish errors are reported, not fatal", func(t *testing.T) {
		var reported []error
		onToken, finish := council.TokenStream(ctx, failingSink{}, "dlb", "a", 0, 1, func(err error) { reported = append(reported, err) })
		onToken("x")
		finish()
		if len(reported) != 2 || !errors.Is(reported[0], council.ErrUnavailable) {
			t.Errorf("reported %v, want two ErrUnavailable", reported)
		}
	})
	t.Run("nil report ignores errors", func(t *testing.T) {
		onToken, finish := council.TokenStream(ctx, failingSink{}, "dlb", "a", 0, 1, nil)
		onToken("x")
		finish()
	})
	t.Run("chunks", func(t *testing.T) {
		sink := &counciltest.TokenSink{}
		onToken, finish := council.TokenStream(ctx, sink, "dlb", "a", 2, 3, nil)
		onToken("Hello ")
		onToken("world")
		finish()
		want := []council.TokenChunk{
			{DeliberationID: "dlb", AgentID: "a", Stage: 2, Attempt: 3, Seq: 1, Text: "Hello "},
			{DeliberationID: "dlb", AgentID: "a", Stage: 2, Attempt: 3, Seq: 2, Text: "world"},
			{DeliberationID: "dlb", AgentID: "a", Stage: 2, Attempt: 3, Seq: 3, Final: true},
		}
		if diff := cmp.Diff(want, sink.Chunks()); diff != "" {
			t.Errorf("chunks (-want +got):\n%s", diff)
		}
	})
}

func critiqueRequest(t *testing.T, task council.Task) council.CritiqueRequest {
	t.Helper()
	d := newDeliberation(t, task)
	for _, a := range []string{archi, qa, devops} {
		recordProposal(t, d, "p.0."+a, prop(a, 0), t0)
	}
	r, err := d.CritiqueRequest(council.CritiqueKey(0, archi, qa))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestReview(t *testing.T) {
	task := counciltest.Task()
	task.Agents[1].Model = "council-judge" // qa reviews architect
	task.Constraints.MaxTokens = 100
	r := critiqueRequest(t, task)
	r.Attempt = 3
	llm := &counciltest.Completer{}
	got, err := council.Review(ctx, llm, r)
	if err != nil {
		t.Fatalf("Review: %v", err)
	}
	s := council.CritiqueSchema(council.DefaultRubric())
	req := llm.Requests()[0]
	want := council.CompletionRequest{Model: "council-judge", Messages: council.CritiqueMessages(r), Temperature: 0.2,
		MaxTokens: council.CritiqueMaxTokens, Seed: req.Seed, Schema: &s}
	if diff := cmp.Diff(want, req, ignoreFuncs, approx); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
	if req.Seed == nil || req.OnToken != nil {
		t.Errorf("seed %v, OnToken set %v; want a seed and no streaming", req.Seed, req.OnToken != nil)
	}
	if _, err := council.Review(ctx, llm, r); err != nil {
		t.Fatalf("Review: %v", err)
	}
	if a, b := *llm.Requests()[0].Seed, *llm.Requests()[1].Seed; a != b {
		t.Errorf("seeds of one critique differ: %d, %d", a, b)
	}
	wantC := council.Critique{ReviewerID: qa, AuthorID: archi, Stage: 0, Overall: 0.7,
		Scores:    map[string]float64{"correctness": 0.7, "completeness": 0.7, "clarity": 0.7, "feasibility": 0.7},
		Strengths: []string{"clear"}, Issues: []string{"thin on tests"}, Suggestions: []string{"add tests"},
		Model: "fake", Usage: council.Usage{PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15}, Attempt: 3}
	if diff := cmp.Diff(wantC, got, approx, cmpopts.IgnoreFields(council.Critique{}, "Duration")); diff != "" {
		t.Errorf("critique (-want +got):\n%s", diff)
	}

	task.Constraints.MaxTokens = 1000
	llm = &counciltest.Completer{}
	if _, err := council.Review(ctx, llm, critiqueRequest(t, task)); err != nil {
		t.Fatalf("Review: %v", err)
	}
	if got := llm.Requests()[0].MaxTokens; got != council.CritiqueMaxTokens {
		t.Errorf("MaxTokens = %d, want the critique budget %d whatever the task's", got, council.CritiqueMaxTokens)
	}
}

func TestReviewErrors(t *testing.T) {
	answer := func(content string, err error) *counciltest.Completer {
		return &counciltest.Completer{CompleteFunc: func(context.Context, council.CompletionRequest) (council.Completion, error) {
			return council.Completion{Content: content}, err
		}}
	}
	key := council.CritiqueKey(0, archi, qa)
	tests := []struct {
		name string
		llm  council.Completer
		is   error
		want string
	}{
		{"unavailable", answer("", council.Unavailablef("connection refused")), council.ErrUnavailable, "critique " + key + ": unavailable: connection refused"},
		{"not JSON", answer("looks fine, 8/10", nil), council.ErrBadOutput, "critique " + key + ": bad model output: critique is not valid JSON"},
		{"score out of range", answer(counciltest.CritiqueJSON(council.DefaultRubric(), 11), nil), council.ErrBadOutput, "not a number in [0,10]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := council.Review(ctx, tt.llm, critiqueRequest(t, counciltest.Task()))
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Review error = %v, want one wrapping %v containing %q", err, tt.is, tt.want)
			}
		})
	}
}

// TestRetriesSampleAnew: a redelivered attempt reuses its seed (the same
// text), a retry draws a new one, so that an output the model got wrong is
// not drawn again.
func TestRetriesSampleAnew(t *testing.T) {
	seeds := func(attempt int) (proposal, critique int64) {
		t.Helper()
		llm := &counciltest.Completer{}
		pr := proposalRequest(t, counciltest.Task(), "p.0."+qa)
		pr.Attempt = attempt
		if _, err := council.Generate(ctx, llm, pr, nil); err != nil {
			t.Fatal(err)
		}
		cr := critiqueRequest(t, counciltest.Task())
		cr.Attempt = attempt
		if _, err := council.Review(ctx, llm, cr); err != nil {
			t.Fatal(err)
		}
		return *llm.Requests()[0].Seed, *llm.Requests()[1].Seed
	}
	p1, c1 := seeds(1)
	p1again, c1again := seeds(1)
	p2, c2 := seeds(2)
	p3, c3 := seeds(3)
	if p1 != p1again || c1 != c1again {
		t.Errorf("attempt 1 twice: seeds %d/%d and %d/%d, want the same", p1, c1, p1again, c1again)
	}
	if p1 == p2 || p2 == p3 || p1 == p3 || c1 == c2 || c2 == c3 || c1 == c3 {
		t.Errorf("seeds per attempt: proposal %d %d %d, critique %d %d %d; want each retry to differ", p1, p2, p3, c1, c2, c3)
	}
}
