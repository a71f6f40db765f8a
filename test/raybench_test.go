package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"council.dev/cli/stack"
	"council.dev/events"
	"council.dev/functions/execute"
	"council.dev/shared/adapters/rayjobs/raytest"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// benchLatency is how long every call of the stub LLM server takes.
const benchLatency = 200 * time.Millisecond

// stubLLM is an OpenAI-compatible HTTP server (chat completions, streamed
// or not, and the model list) whose every completion takes benchLatency and
// answers like counciltest's cooperative model. It is a benchmark tool: the
// Ray backend's jobs call the LLM from their own processes, so the stub must
// be a server; the tests run against the real LLM server.
type stubLLM struct {
	URL   string
	calls atomic.Int64
}

func startStubLLM(b *testing.B) *stubLLM {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := &stubLLM{URL: "http://" + ln.Addr().String() + "/v1"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"object":"list","data":[{"id":"council-tiny","object":"model"}]}`))
	})
	mux.HandleFunc("POST /v1/chat/completions", s.complete)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })
	return s
}

func (s *stubLLM) complete(w http.ResponseWriter, r *http.Request) {
	s.calls.Add(1)
	var in struct {
		Model    string `json:"model"`
		Stream   bool   `json:"stream"`
		Messages []struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"messages"`
		ResponseFormat *struct {
			JSONSchema *struct {
				Name   string          `json:"name"`
				Schema json.RawMessage `json:"schema"`
			} `json:"json_schema"`
		} `json:"response_format"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req := council.CompletionRequest{Model: in.Model}
	for _, m := range in.Messages {
		req.Messages = append(req.Messages, council.Message{Role: m.Role, Content: m.Content})
	}
	if f := in.ResponseFormat; f != nil && f.JSONSchema != nil {
		req.Schema = &council.JSONSchema{Name: f.JSONSchema.Name, Schema: f.JSONSchema.Schema}
	}
	select {
	case <-time.After(benchLatency):
	case <-r.Context().Done():
		return
	}
	out := counciltest.Answer(req)
	usage := map[string]int{"prompt_tokens": out.Usage.PromptTokens, "completion_tokens": out.Usage.CompletionTokens, "total_tokens": out.Usage.TotalTokens}
	if !in.Stream {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"id": "stub", "object": "chat.completion", "model": in.Model, "usage": usage,
			"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
				"message": map[string]any{"role": "assistant", "content": out.Content}}},
		})
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	chunk := func(v map[string]any) {
		b, _ := json.Marshal(v)
		_, _ = fmt.Fprintf(w, "data: %s\n\n", b)
	}
	chunk(map[string]any{"id": "stub", "object": "chat.completion.chunk", "model": in.Model,
		"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"role": "assistant", "content": out.Content}}}})
	chunk(map[string]any{"id": "stub", "object": "chat.completion.chunk", "model": in.Model,
		"choices": []any{map[string]any{"index": 0, "delta": map[string]any{}, "finish_reason": "stop"}}})
	chunk(map[string]any{"id": "stub", "object": "chat.completion.chunk", "model": in.Model, "choices": []any{}, "usage": usage})
	_, _ = fmt.Fprint(w, "data: [DONE]\n\n")
}

// benchTask is a deliberation of n agents, 1 round, 1 peer, backend.
func rayBenchTask(n int, backend council.Backend) council.Task {
	t := counciltest.Task()
	t.Agents = make([]council.Agent, n)
	for i := range t.Agents {
		t.Agents[i] = council.Agent{ID: fmt.Sprintf("agent-%02d", i), Role: "DEV"}
	}
	t.Constraints.Rounds, t.Constraints.Peers, t.Constraints.MaxTokens = 1, 1, 64
	t.Constraints.Timeout = 10 * time.Minute
	t.Model = "council-tiny"
	t.Backend = backend
	return t
}

// BenchmarkRayMakespan runs whole deliberations on the functions backend,
// on Ray with a job per deliberation (mode=job) and on Ray's warm pool
// (mode=pool), against the real Ray head and a stub LLM server answering
// every call in 200 ms (critical path of 1 round: 4 calls, 0.8 s). Metrics:
// makespan-s and makespan/critical for one deliberation at a time (agents=3,
// agents=9); for burst=9, nine 3-agent deliberations sent at once,
// burst-wall-s and burst/slowest: the burst's wall time ÷ the slowest
// single 3-agent deliberation of the same mode (measured first, alone).
func BenchmarkRayMakespan(b *testing.B) {
	llm := startStubLLM(b)
	dir := buildAgent(b)
	for _, mode := range []string{"functions", "job", "pool"} {
		b.Run("mode="+mode, func(b *testing.B) {
			s := rayBenchStack(b, mode, llm.URL, dir)
			backend := council.BackendRay
			if mode == "functions" {
				backend = council.BackendFunctions
			}
			seq := 0
			runOne := func(t council.Task) time.Duration {
				seq++
				req := events.NewRequest("council.dev/bench-ray", fmt.Sprintf("%s-%d-%d", mode, time.Now().UnixNano(), seq), t, time.Now())
				id := council.DeliberationID(req.Source, req.ID)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				defer cancel()
				start := time.Now()
				if err := s.Send(ctx, req); err != nil {
					b.Fatal(err)
				}
				out, err := s.Await(ctx, id)
				took := time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
				if out.Failed != nil {
					b.Fatalf("%s: deliberation %s failed: %s", mode, id, out.Failed.Reason)
				}
				return took
			}
			runOne(rayBenchTask(3, backend)) // warm: connections, packages, the pool's workers
			var slowest time.Duration
			for _, n := range []int{3, 9} {
				b.Run("agents="+strconv.Itoa(n), func(b *testing.B) {
					var total time.Duration
					ops := 0
					for b.Loop() {
						took := runOne(rayBenchTask(n, backend))
						total += took
						ops++
						if n == 3 {
							slowest = max(slowest, took)
						}
					}
					mean := total / time.Duration(ops)
					b.ReportMetric(mean.Seconds(), "makespan-s")
					b.ReportMetric(float64(mean)/float64(4*benchLatency), "makespan/critical")
				})
			}
			b.Run("burst=9", func(b *testing.B) {
				var total time.Duration
				ops := 0
				for b.Loop() {
					start := time.Now()
					var wg sync.WaitGroup
					for range 9 {
						wg.Go(func() { runOne(rayBenchTask(3, backend)) })
					}
					wg.Wait()
					total += time.Since(start)
					ops++
				}
				wall := total / time.Duration(ops)
				b.ReportMetric(wall.Seconds(), "burst-wall-s")
				b.ReportMetric(float64(wall)/float64(slowest), "burst/slowest")
			})
		})
	}
}

// rayBenchStack starts the stack for mode over the stub LLM at llmURL.
func rayBenchStack(b *testing.B, mode, llmURL, agentDir string) *stack.Stack {
	b.Helper()
	cfg := stack.Config{
		LLMURL: llmURL, LLMModel: "council-tiny", StoreDir: b.TempDir(), LLMTimeout: time.Minute,
		SweepEvery: time.Second, Concurrency: 32,
	}
	if mode != "functions" {
		cfg.RayAddress, cfg.AgentDir = raytest.Address(b), agentDir
	}
	if mode == "pool" {
		cfg.RayPool, cfg.RayPoolMax, cfg.RayPoolWorkers = 1, 3, 9
	}
	s, err := stack.Start(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		s.Close()
		if mode == "pool" {
			stopPool(b, s, 3)
		}
	})
	if mode == "pool" {
		eventually(b, 2*time.Minute, "pool job running", func() bool {
			info, err := s.Ray.Get(context.Background(), execute.PoolJobID(0))
			return err == nil && info.State == council.JobRunning
		})
	}
	return s
}
