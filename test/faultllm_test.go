//go:build faults

package test

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Kinds of fault the stub injects.
const (
	fault500       = "500"
	fault429       = "429"
	faultReset     = "reset"
	faultSlow      = "slow"
	faultMalformed = "malformed"
)

var faultKinds = []string{fault500, fault429, faultReset, faultSlow, faultMalformed}

// faultyLLM is an OpenAI-compatible chat completions stub — a test tool for
// the fault runs, not a substitute for the real LLM server of the other
// tests — that answers like a cooperative model (text, streamed or not; a
// critique that follows the schema the request carries) and turns a share
// of the calls into faults: 500, 429, a connection reset, a slow answer,
// or a malformed body.
type faultyLLM struct {
	rate float64
	slow time.Duration

	mu       sync.Mutex
	rng      *rand.Rand
	calls    int
	injected map[string]int
	ok       atomic.Int64
}

func newFaultyLLM(t *testing.T, rate float64, seed uint64) (*faultyLLM, string) {
	t.Helper()
	f := &faultyLLM{rate: rate, slow: 1500 * time.Millisecond, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		injected: map[string]int{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL + "/v1"
}

// draw decides the fate of one call: "" for a good answer, else a fault,
// and a service time.
func (f *faultyLLM) draw() (string, time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	service := time.Duration(20+f.rng.IntN(80)) * time.Millisecond
	if f.rng.Float64() >= f.rate {
		return "", service
	}
	kind := faultKinds[f.rng.IntN(len(faultKinds))]
	f.injected[kind]++
	return kind, service
}

func (f *faultyLLM) counts() (calls int, injected map[string]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for k, v := range f.injected {
		out[k] = v
	}
	return f.calls, out
}

type chatRequest struct {
	Model          string `json:"model"`
	Stream         bool   `json:"stream"`
	ResponseFormat *struct {
		JSONSchema *struct {
			Schema json.RawMessage `json:"schema"`
		} `json:"json_schema"`
	} `json:"response_format"`
}

func (f *faultyLLM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet { // health: GET /v1/models
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"object":"list","data":[{"id":"council-tiny","object":"model"}]}`)
		return
	}
	var req chatRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	kind, service := f.draw()
	wait := func(d time.Duration) bool {
		select {
		case <-time.After(d):
			return true
		case <-r.Context().Done():
			return false
		}
	}
	if !wait(service) {
		return
	}
	switch kind {
	case fault500:
		http.Error(w, `{"error":{"message":"injected: internal error","type":"server_error"}}`, http.StatusInternalServerError)
		return
	case fault429:
		w.Header().Set("Retry-After", "0")
		http.Error(w, `{"error":{"message":"injected: too many requests"}}`, http.StatusTooManyRequests)
		return
	case faultReset:
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	case faultSlow:
		if !wait(f.slow) {
			return
		}
	}
	content := "A proposal: shard the limiter by key, keep counters in a shared store, fail open."
	if req.ResponseFormat != nil && req.ResponseFormat.JSONSchema != nil {
		content = critiqueFor(req.ResponseFormat.JSONSchema.Schema)
	}
	model := req.Model
	if model == "" {
		model = "council-tiny"
	}
	if req.Stream {
		f.stream(w, model, content, kind == faultMalformed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if kind == faultMalformed {
		_, _ = io.WriteString(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assis`)
		return
	}
	body, _ := json.Marshal(map[string]any{
		"id": "x", "object": "chat.completion", "model": model,
		"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
			"message": map[string]any{"role": "assistant", "content": content}}},
		"usage": map[string]any{"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52},
	})
	_, _ = w.Write(body)
	f.ok.Add(1)
}

// stream answers in server-sent events, a word a chunk, with the usage
// chunk and [DONE]; malformed breaks the stream after its first chunk.
func (f *faultyLLM) stream(w http.ResponseWriter, model, content string, malformed bool) {
	w.Header().Set("Content-Type", "text/event-stream")
	flusher, _ := w.(http.Flusher)
	chunk := func(v map[string]any) {
		v["id"], v["object"], v["model"] = "x", "chat.completion.chunk", model
		b, _ := json.Marshal(v)
		fmt.Fprintf(w, "data: %s\n\n", b)
		if flusher != nil {
			flusher.Flush()
		}
	}
	for i, word := range strings.SplitAfter(content, " ") {
		chunk(map[string]any{"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"content": word}}}})
		if malformed && i == 0 {
			_, _ = io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\n\n")
			return
		}
	}
	chunk(map[string]any{"choices": []any{map[string]any{"index": 0, "delta": map[string]any{}, "finish_reason": "stop"}}})
	chunk(map[string]any{"choices": []any{}, "usage": map[string]any{"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52}})
	_, _ = io.WriteString(w, "data: [DONE]\n\n")
	f.ok.Add(1)
}

// critiqueFor returns a critique that follows schema (council's critique
// schema: a score per criterion of the rubric, overall, three lists, and
// the reviewer's confidence when the schema asks for it).
func critiqueFor(schema json.RawMessage) string {
	var s struct {
		Required   []string `json:"required"`
		Properties struct {
			Scores struct {
				Required []string `json:"required"`
			} `json:"scores"`
		} `json:"properties"`
	}
	_ = json.Unmarshal(schema, &s)
	scores := map[string]int{}
	for i, name := range s.Properties.Scores.Required {
		scores[name] = 5 + i%5
	}
	out := map[string]any{"scores": scores, "overall": 7,
		"strengths": []string{"clear"}, "issues": []string{"no numbers"}, "suggestions": []string{"add a budget"}}
	if slices.Contains(s.Required, "confidence") {
		out["confidence"] = 8
	}
	b, _ := json.Marshal(out)
	return string(b)
}
