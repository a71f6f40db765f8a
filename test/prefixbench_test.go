package test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"council.dev/cli/stack"
	"council.dev/events"
	"council.dev/shared/adapters/vllm/vllmtest"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// prefixBenchTask is a 1-round deliberation of n agents on an 8 KiB task.
func prefixBenchTask(n int) council.Task {
	t := counciltest.Task()
	t.Description = strings.Repeat("Rate-limit the API per key now. ", 8<<10/32+1)[:8<<10]
	t.Agents = make([]council.Agent, n)
	for i := range t.Agents {
		t.Agents[i] = council.Agent{ID: fmt.Sprintf("agent-%02d", i), Role: "DEV"}
	}
	t.Constraints.Rounds, t.Constraints.Peers, t.Constraints.MaxTokens = 1, 1, 32
	t.Constraints.Timeout = 10 * time.Minute
	t.Model = vllmtest.Model()
	return t
}

// BenchmarkPromptCache runs whole 1-round deliberations of 3 and 9 agents
// with an 8 KiB task on the real LLM server (COUNCIL_LLM_URL) and reports
// the result's prompt_cache: cached-token-share (the prompt tokens the
// server reported as cached) and shared-prefix-share (the prompt bytes in
// a prefix shared with an earlier call of the deliberation), the mean over
// the deliberations of the run.
func BenchmarkPromptCache(b *testing.B) {
	s, err := stack.Start(context.Background(), stack.Config{
		LLMURL: vllmtest.URL(b), LLMModel: vllmtest.Model(), StoreDir: b.TempDir(), LLMTimeout: 2 * time.Minute,
	})
	if err != nil {
		b.Fatalf("start stack: %v", err)
	}
	b.Cleanup(s.Close)
	seq := 0
	for _, n := range []int{3, 9} {
		b.Run("agents="+strconv.Itoa(n), func(b *testing.B) {
			var cached, shared float64
			ops := 0
			for b.Loop() {
				seq++
				req := events.NewRequest("council.dev/bench-prefix", fmt.Sprintf("prefix-%d-%d", time.Now().UnixNano(), seq), prefixBenchTask(n), time.Now())
				id := council.DeliberationID(req.Source, req.ID)
				ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
				if err := s.Send(ctx, req); err != nil {
					cancel()
					b.Fatal(err)
				}
				out, err := s.Await(ctx, id)
				cancel()
				if err != nil {
					b.Fatalf("await %s: %v (stack: %v)", id, err, s.Err())
				}
				if out.Failed != nil {
					b.Fatalf("deliberation %s failed: %s", id, out.Failed.Reason)
				}
				pc := out.Completed.PromptCache
				if pc.SharedPrefixShare <= 0 {
					b.Fatalf("deliberation %s: shared prefix share %v, want above 0 (every prompt opens with the task)", id, pc.SharedPrefixShare)
				}
				cached += pc.CachedTokenShare
				shared += pc.SharedPrefixShare
				ops++
			}
			b.ReportMetric(cached/float64(ops), "cached-token-share")
			b.ReportMetric(shared/float64(ops), "shared-prefix-share")
		})
	}
}
