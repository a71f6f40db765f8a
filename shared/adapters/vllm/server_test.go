package vllm_test

// Integration tests against a real OpenAI-compatible server: the one
// scripts/llm-server.sh starts (llama.cpp serving council-tiny), or any vLLM
// named by COUNCIL_LLM_URL and COUNCIL_LLM_MODEL. They fail, never skip,
// when the server is missing.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"council.dev/events"
	"council.dev/shared/adapters/vllm"
	"council.dev/shared/adapters/vllm/vllmtest"
	"council.dev/shared/council"
)

func serverClient(t testing.TB, opts ...vllm.Option) *vllm.Client {
	t.Helper()
	c, err := vllm.New(vllmtest.URL(t), vllmtest.Model(), opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func prompt() []council.Message {
	return []council.Message{
		{Role: "system", Content: "You are one member of a council of agents. Answer briefly."},
		{Role: "user", Content: "Propose a name for a function that reverses a string."},
	}
}

func TestServerCompletion(t *testing.T) {
	c := serverClient(t)
	seed := int64(7)
	got, err := c.Complete(t.Context(), council.CompletionRequest{
		Messages: prompt(), Temperature: 0.8, MaxTokens: 32, Seed: &seed,
	})
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if strings.TrimSpace(got.Content) == "" {
		t.Errorf("empty content: %+v", got)
	}
	if got.Usage.PromptTokens <= 0 || got.Usage.CompletionTokens <= 0 || got.Usage.CompletionTokens > 32 {
		t.Errorf("usage %+v, want prompt > 0 and 0 < completion <= 32", got.Usage)
	}
	if got.FinishReason != "stop" && got.FinishReason != "length" {
		t.Errorf("finish reason %q", got.FinishReason)
	}
	if got.Model == "" {
		t.Errorf("no model in the answer")
	}
}

func TestServerSeedReproduces(t *testing.T) {
	c := serverClient(t)
	seed := int64(11)
	req := council.CompletionRequest{Messages: prompt(), Temperature: 0.8, MaxTokens: 16, Seed: &seed}
	a, err := c.Complete(t.Context(), req)
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	b, err := c.Complete(t.Context(), req)
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if a.Content != b.Content {
		t.Errorf("same seed, different content:\n%q\n%q", a.Content, b.Content)
	}
}

func TestServerStreaming(t *testing.T) {
	c := serverClient(t)
	var pieces []string
	got, err := c.Complete(t.Context(), council.CompletionRequest{
		Messages: prompt(), Temperature: 0.8, MaxTokens: 24,
		OnToken: func(s string) { pieces = append(pieces, s) },
	})
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if len(pieces) == 0 {
		t.Fatal("OnToken never called")
	}
	if joined := strings.Join(pieces, ""); joined != got.Content {
		t.Errorf("content %q != concatenated tokens %q", got.Content, joined)
	}
	if got.Usage.CompletionTokens <= 0 || got.Usage.CompletionTokens > 24 {
		t.Errorf("usage %+v, want 0 < completion <= 24", got.Usage)
	}
	if got.FinishReason != "stop" && got.FinishReason != "length" {
		t.Errorf("finish reason %q", got.FinishReason)
	}
}

// critiqueSchema is shaped like council's critique: bounded integers,
// bounded arrays of bounded strings, no extra properties. The integers carry
// an enum as well as minimum/maximum (ADR 2: some engines ignore
// minimum/maximum; all enforce an enum).
const critiqueSchema = `{
  "type": "object",
  "properties": {
    "scores": {
      "type": "object",
      "properties": {
        "correctness": {"type": "integer", "minimum": 0, "maximum": 10, "enum": [0,1,2,3,4,5,6,7,8,9,10]},
        "clarity": {"type": "integer", "minimum": 0, "maximum": 10, "enum": [0,1,2,3,4,5,6,7,8,9,10]}
      },
      "required": ["correctness", "clarity"],
      "additionalProperties": false
    },
    "overall": {"type": "integer", "minimum": 0, "maximum": 10, "enum": [0,1,2,3,4,5,6,7,8,9,10]},
    "strengths": {"type": "array", "items": {"type": "string", "maxLength": 80}, "maxItems": 3},
    "issues": {"type": "array", "items": {"type": "string", "maxLength": 80}, "maxItems": 3},
    "suggestions": {"type": "array", "items": {"type": "string", "maxLength": 80}, "maxItems": 3}
  },
  "required": ["scores", "overall", "strengths", "issues", "suggestions"],
  "additionalProperties": false
}`

type critique struct {
	Scores      map[string]int `json:"scores"`
	Overall     int            `json:"overall"`
	Strengths   []string       `json:"strengths"`
	Issues      []string       `json:"issues"`
	Suggestions []string       `json:"suggestions"`
}

// checkCritique reports every way raw breaks critiqueSchema.
func checkCritique(raw string) []string {
	var problems []string
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	var c critique
	if err := dec.Decode(&c); err != nil {
		return []string{"decode: " + err.Error()}
	}
	var top map[string]json.RawMessage
	_ = json.Unmarshal([]byte(raw), &top)
	for _, k := range []string{"scores", "overall", "strengths", "issues", "suggestions"} {
		if _, ok := top[k]; !ok {
			problems = append(problems, "missing "+k)
		}
	}
	if len(c.Scores) != 2 {
		problems = append(problems, "scores must have exactly correctness and clarity")
	}
	for _, k := range []string{"correctness", "clarity"} {
		if v, ok := c.Scores[k]; !ok || v < 0 || v > 10 {
			problems = append(problems, "bad scores."+k)
		}
	}
	if c.Overall < 0 || c.Overall > 10 {
		problems = append(problems, "overall out of range")
	}
	for name, list := range map[string][]string{"strengths": c.Strengths, "issues": c.Issues, "suggestions": c.Suggestions} {
		if list == nil || len(list) > 3 {
			problems = append(problems, name+": want an array of at most 3")
		}
		for _, s := range list {
			if utf8.RuneCountInString(s) > 80 {
				problems = append(problems, name+": string longer than 80")
			}
		}
	}
	return problems
}

func TestServerJSONSchema(t *testing.T) {
	c := serverClient(t)
	for _, stream := range []bool{false, true} {
		name := map[bool]string{false: "complete", true: "stream"}[stream]
		t.Run(name, func(t *testing.T) {
			seed := int64(3)
			req := council.CompletionRequest{
				Messages:    append(prompt(), council.Message{Role: "user", Content: "Critique the proposal as JSON."}),
				Temperature: 0.8,
				MaxTokens:   1024,
				Seed:        &seed,
				Schema:      &council.JSONSchema{Name: "critique", Schema: []byte(critiqueSchema), Strict: true},
			}
			if stream {
				req.OnToken = func(string) {}
			}
			got, err := c.Complete(t.Context(), req)
			if err != nil {
				t.Fatalf("Complete: %v", err)
			}
			if got.FinishReason != "stop" {
				t.Errorf("finish reason %q, want stop (output cut at max tokens?)", got.FinishReason)
			}
			if problems := checkCritique(got.Content); len(problems) > 0 {
				t.Errorf("output breaks the schema: %v\n%s", problems, got.Content)
			}
		})
	}
}

func TestServerConcurrentStreams(t *testing.T) {
	c := serverClient(t)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			seed := int64(i)
			got, err := c.Complete(t.Context(), council.CompletionRequest{
				Messages: prompt(), Temperature: 0.8, MaxTokens: 24, Seed: &seed,
				OnToken: func(string) {},
			})
			if err != nil {
				t.Errorf("agent %d: %v", i, err)
				return
			}
			if got.Content == "" || (got.FinishReason != "stop" && got.FinishReason != "length") {
				t.Errorf("agent %d: content %q finish %q", i, got.Content, got.FinishReason)
			}
		})
	}
	wg.Wait()
}

func TestServerDisallowedModel(t *testing.T) {
	c := serverClient(t)
	_, err := c.Complete(t.Context(), council.CompletionRequest{Model: "not-" + vllmtest.Model(), Messages: prompt(), MaxTokens: 4})
	if !errors.Is(err, council.ErrInvalid) {
		t.Fatalf("error = %v, want ErrInvalid", err)
	}
}

func TestUnreachableServerIsUnavailable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil { // nothing listens there now
		t.Fatal(err)
	}
	c, err := vllm.New("http://"+addr+"/v1", "m", vllm.WithRetries(2),
		vllm.WithBackoff(time.Millisecond, 5*time.Millisecond), vllm.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Complete(t.Context(), council.CompletionRequest{Messages: prompt(), MaxTokens: 4})
	if !errors.Is(err, council.ErrUnavailable) {
		t.Fatalf("error = %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "after 3 attempts") {
		t.Errorf("error %q, want it to say all 3 attempts were made", err)
	}
}

// compile compiles a JSON Schema document for validating outputs.
func compile(t *testing.T, name string, schema []byte) *events.Validator {
	t.Helper()
	v, err := events.CompileSchema(name, schema)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestServerStructuredKinds sends every schema council asks for, exactly as
// the adapter sends it to vLLM (response_format json_schema, strict), and
// validates each answer against the whole schema: types, enums, bounds on
// numbers, lengths and item counts. The schemas' bounds are the production
// ones (descriptions up to 2000 characters, up to 20 tasks); the server must
// compile them, stay up, and stop the output inside the schema.
func TestServerStructuredKinds(t *testing.T) {
	c := serverClient(t)
	extraction, _ := council.StructuredSchema(council.KindTaskExtraction)
	derivation, _ := council.StructuredSchema(council.KindTaskDerivation)
	critique := council.CritiqueSchema([]string{"correctness", "completeness", "clarity", "feasibility"})
	cases := []struct {
		schema    council.JSONSchema
		maxTokens int
	}{
		{critique, council.CritiqueMaxTokens},
		{extraction, 2048},
		{derivation, 2048},
	}
	for _, tc := range cases {
		validator := compile(t, tc.schema.Name, tc.schema.Schema)
		for _, stream := range []bool{false, true} {
			for seed := range int64(3) {
				name := fmt.Sprintf("%s/stream=%v/seed=%d", tc.schema.Name, stream, seed)
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					req := council.CompletionRequest{
						Messages:  append(prompt(), council.Message{Role: "user", Content: "Answer as JSON."}),
						MaxTokens: tc.maxTokens, Seed: &seed, Temperature: 0.7,
						Schema: &tc.schema,
					}
					if stream {
						req.OnToken = func(string) {}
					}
					got, err := c.Complete(t.Context(), req)
					if err != nil {
						t.Fatalf("Complete: %v", err)
					}
					if got.FinishReason != "stop" {
						t.Errorf("finish reason %q, want stop (cut at %d tokens?)", got.FinishReason, tc.maxTokens)
					}
					if err := validator.Validate([]byte(got.Content)); err != nil {
						t.Errorf("output breaks the schema: %v\n%s", err, got.Content)
					}
				})
			}
		}
	}
}

// TestServerReportsCachedTokens: a prompt sent twice is served from the
// server's prefix cache the second time, and the adapter reports it, both
// for a plain and for a streamed completion. (vLLM reports cached tokens
// with --enable-prompt-tokens-details and prefix caching on.)
func TestServerReportsCachedTokens(t *testing.T) {
	c := serverClient(t)
	long := strings.Repeat("The council reviews every proposal against the rubric before it ranks them. ", 20)
	for _, stream := range []bool{false, true} {
		t.Run(map[bool]string{false: "complete", true: "stream"}[stream], func(t *testing.T) {
			msgs := []council.Message{
				{Role: "system", Content: long},
				{Role: "user", Content: fmt.Sprintf("Propose a plan (stream=%v).", stream)},
			}
			var last council.Completion
			for i := range 2 {
				req := council.CompletionRequest{Messages: msgs, Temperature: 0.7, MaxTokens: 4}
				if stream {
					req.OnToken = func(string) {}
				}
				got, err := c.Complete(t.Context(), req)
				if err != nil {
					t.Fatalf("call %d: %v", i+1, err)
				}
				last = got
			}
			u := last.Usage
			if u.CachedTokens <= 0 || u.CachedTokens > u.PromptTokens {
				t.Errorf("second call usage %+v: want 0 < cached tokens <= prompt tokens", u)
			}
		})
	}
}

// BenchmarkServerFourCalls measures four 64-token completions on the real
// server: one after the other (the baseline) and all four at once. With
// parallel slots the server decodes the four in one batch per step, so the
// concurrent run takes clearly less than the sequential one; a server that
// serves one call at a time takes as long. tokens/s counts completion tokens.
func BenchmarkServerFourCalls(b *testing.B) {
	c := serverClient(b)
	const calls, maxTokens = 4, 64
	call := func(i int) int {
		seed := int64(i)
		got, err := c.Complete(b.Context(), council.CompletionRequest{
			Messages: []council.Message{
				{Role: "system", Content: "You are one member of a council of agents."},
				{Role: "user", Content: fmt.Sprintf("Agent %d: propose a rate limiter.", i)},
			},
			Temperature: 0.7, MaxTokens: maxTokens, Seed: &seed,
		})
		if err != nil {
			b.Fatal(err)
		}
		return got.Usage.CompletionTokens
	}
	b.Run("sequential", func(b *testing.B) {
		tokens := 0
		for b.Loop() {
			for i := range calls {
				tokens += call(i)
			}
		}
		b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
	})
	b.Run("concurrent", func(b *testing.B) {
		var tokens atomic.Int64
		for b.Loop() {
			var wg sync.WaitGroup
			for i := range calls {
				wg.Go(func() { tokens.Add(int64(call(i))) })
			}
			wg.Wait()
		}
		b.ReportMetric(float64(tokens.Load())/b.Elapsed().Seconds(), "tokens/s")
	})
}

// TestServerAnswerCutShortIsBadOutput: against the real server, a
// structured answer cut at max_tokens does not follow its schema; the
// adapter reports it as ErrBadOutput (transient: another sample with more
// room may do), saying so, instead of handing on broken JSON.
func TestServerAnswerCutShortIsBadOutput(t *testing.T) {
	c := serverClient(t)
	s, _ := council.StructuredSchema(council.KindTaskDerivation)
	seed := int64(5)
	_, err := c.Complete(t.Context(), council.CompletionRequest{
		Messages: prompt(), MaxTokens: 3, Seed: &seed, Temperature: 0.7, Schema: &s,
	})
	if !errors.Is(err, council.ErrBadOutput) || !strings.Contains(err.Error(), `finish reason "length"`) {
		t.Fatalf("error %v, want ErrBadOutput naming the cut (finish reason \"length\")", err)
	}
}
