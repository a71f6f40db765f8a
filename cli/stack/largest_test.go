package stack

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"council.dev/events"
	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// longCompleter answers every proposal with as much text as max_tokens
// allows (4 bytes a token, council's estimate) and critiques as the
// cooperative model does.
type longCompleter struct{ calls atomic.Int64 }

func (c *longCompleter) Complete(ctx context.Context, req council.CompletionRequest) (council.Completion, error) {
	c.calls.Add(1)
	out := counciltest.Answer(req)
	if req.Schema == nil {
		n := req.MaxTokens * 4
		out.Content = strings.Repeat("<tok> ", n/6+1)[:n] // markup: events do not escape it (1 byte, not 6)
	}
	return out, nil
}

// TestLargestCouncilCompletes: large councils complete, whatever the size
// of their result: 81 agents with 8k-token answers (a result of megabytes,
// several times the broker's max_payload), and the largest request the
// validation accepts at max_tokens 32,768 (council.MaxAgents agents, one
// round: about 32 MiB of answers). Each result is a record of its own in
// the state, and deliberation.completed goes by reference to the object
// store (the claim check), resolved on receipt.
func TestLargestCouncilCompletes(t *testing.T) {
	for _, tc := range []struct{ agents, maxTokens int }{{81, 8192}, {council.MaxAgents, council.MaxTokensLimit}} {
		t.Run(fmt.Sprintf("agents=%d/max_tokens=%d", tc.agents, tc.maxTokens), func(t *testing.T) {
			largeCouncil(t, tc.agents, tc.maxTokens)
		})
	}
}

func largeCouncil(t *testing.T, agents, maxTokens int) {
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	llm := &longCompleter{}
	s, err := Start(ctx, Config{Completer: llm, StoreDir: t.TempDir(), Concurrency: 32})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	task := counciltest.Task()
	task.Agents = nil
	for i := range agents {
		task.Agents = append(task.Agents, council.Agent{ID: fmt.Sprintf("agent-%03d", i), Role: "DEV"})
	}
	task.Constraints.Rounds, task.Constraints.Peers, task.Constraints.MaxTokens = 1, 1, maxTokens
	task.Constraints.Timeout = 7 * time.Minute
	if err := task.WithDefaults().Validate(); err != nil {
		t.Fatalf("the request is not accepted: %v", err)
	}
	req := events.NewRequest("council.dev/test-largest", "largest-1", task, time.Now())
	id := council.DeliberationID(req.Source, req.ID)
	start := time.Now()
	if err := s.Send(ctx, req); err != nil {
		t.Fatal(err)
	}
	out, err := s.Await(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if out.Completed == nil {
		t.Fatalf("deliberation ended %s: %.300s", out.Event.Type(), out.Event.Data())
	}
	if n := len(out.Completed.Ranking); n != agents {
		t.Errorf("%d ranked, want %d", n, agents)
	}
	size := len(out.Event.Data())
	if max := s.NC.MaxPayload(); int64(size) <= max {
		t.Errorf("the result is %d bytes, not more than max_payload %d: the test does not reach the claim check", size, max)
	}
	// The broker holds the event without its data, with the reference.
	topo := natsjs.DefaultTopology()
	stream, err := s.JS.Stream(ctx, topo.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetLastMsgForSubject(ctx, topo.EventSubject(events.TypeDeliberationCompleted))
	if err != nil {
		t.Fatal(err)
	}
	held, err := events.DecodeStructured(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := events.OffloadedRef(held); !ok {
		t.Errorf("the broker holds deliberation.completed with %d bytes of data and no dataref", len(held.Data()))
	}
	t.Logf("%d agents × %d tokens: result %.1f MiB (max_payload %d KiB), %d LLM calls, %s",
		agents, maxTokens, float64(size)/(1<<20), s.NC.MaxPayload()>>10, llm.calls.Load(), time.Since(start).Round(time.Millisecond))
}
