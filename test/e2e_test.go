package test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/cli/stack"
	"council.dev/events"
	"council.dev/shared/adapters/vllm/vllmtest"
	"council.dev/shared/council"
)

// request loads the 3-agent, 1-round deliberation fixture with a fresh
// event id and small completions (the local model is tiny and random).
func request(t testing.TB, maxTokens int) event.Event {
	t.Helper()
	e, err := events.LoadFixture("deliberation.requested.v1/valid/deliberation.json")
	if err != nil {
		t.Fatal(err)
	}
	var data map[string]any
	if err := json.Unmarshal(e.Data(), &data); err != nil {
		t.Fatal(err)
	}
	data["constraints"].(map[string]any)["max_tokens"] = maxTokens
	if err := e.SetData(event.ApplicationJSON, data); err != nil {
		t.Fatal(err)
	}
	e.SetID(fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano()))
	return e
}

func startStack(t *testing.T, duplicate bool) *stack.Stack {
	t.Helper()
	ctx := context.Background()
	s, err := stack.Start(ctx, stack.Config{
		LLMURL: vllmtest.URL(t), LLMModel: vllmtest.Model(), StoreDir: t.TempDir(),
		LLMTimeout: 2 * time.Minute, DuplicateDelivery: duplicate, SweepEvery: time.Second,
	})
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func send(t testing.TB, s *stack.Stack, e event.Event) string {
	t.Helper()
	data, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.JS.Publish(context.Background(), s.Topology.EventSubject(e.Type()), data, jetstream.WithMsgID(e.ID())); err != nil {
		t.Fatalf("publish request: %v", err)
	}
	return council.DeliberationID(e.Source(), e.ID())
}

func await(t *testing.T, s *stack.Stack, id string) *events.Completed {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	out, err := s.Await(ctx, id)
	if err != nil {
		t.Fatalf("await deliberation %s: %v (stack: %v)", id, err, s.Err())
	}
	if out.Failed != nil {
		t.Fatalf("deliberation %s failed: %s", id, out.Failed.Reason)
	}
	return out.Completed
}

// checkCompleted asserts what the Orchestrator relies on in a completed
// 3-agent, 1-round deliberation.
func checkCompleted(t *testing.T, c *events.Completed, taskID string) {
	t.Helper()
	if c.TaskID != taskID || c.Status != "completed" {
		t.Errorf("task_id, status = %q, %q; want %q, completed", c.TaskID, c.Status, taskID)
	}
	if len(c.Ranking) != 3 {
		t.Fatalf("ranking has %d proposals, want 3 (failures: %+v)", len(c.Ranking), c.Failures)
	}
	agents := map[string]bool{}
	for i, r := range c.Ranking {
		if r.Rank != i+1 {
			t.Errorf("ranking[%d].rank = %d, want %d", i, r.Rank, i+1)
		}
		if i > 0 && r.Score > c.Ranking[i-1].Score {
			t.Errorf("ranking not ordered: %v after %v", r.Score, c.Ranking[i-1].Score)
		}
		if agents[r.Proposal.AgentID] {
			t.Errorf("agent %s ranked twice", r.Proposal.AgentID)
		}
		agents[r.Proposal.AgentID] = true
		if r.Proposal.Stage != 1 || r.Proposal.Content == "" {
			t.Errorf("final proposal of %s: stage %d, %d bytes; want stage 1 (the revision), content", r.Proposal.AgentID, r.Proposal.Stage, len(r.Proposal.Content))
		}
		if r.Proposal.Usage.CompletionTokens == 0 {
			t.Errorf("proposal of %s has no completion usage", r.Proposal.AgentID)
		}
		// The final review by all pairs: each of the 3 is reviewed by the
		// other 2.
		if !r.Scored || len(r.Critiques) != 2 {
			t.Errorf("proposal of %s: scored=%v with %d critiques, want 2 (the final review by all pairs)", r.Proposal.AgentID, r.Scored, len(r.Critiques))
		}
		for _, cr := range r.Critiques {
			if cr.AuthorID != r.Proposal.AgentID || cr.ReviewerID == cr.AuthorID {
				t.Errorf("critique %s → %s on the proposal of %s", cr.ReviewerID, cr.AuthorID, r.Proposal.AgentID)
			}
			if cr.Overall < 0 || cr.Overall > 1 || len(cr.Scores) != 4 {
				t.Errorf("critique scores: overall %v, %d criteria; want [0,1] and 4", cr.Overall, len(cr.Scores))
			}
			for name, v := range cr.Scores {
				if v < 0 || v > 1 {
					t.Errorf("criterion %s = %v, outside [0,1]", name, v)
				}
			}
		}
	}
	if c.Winner != c.Ranking[0].Proposal.AgentID {
		t.Errorf("winner = %q, want the top of the ranking %q", c.Winner, c.Ranking[0].Proposal.AgentID)
	}
	// An aggregation on a common scale (the mean unless asked), each
	// proposal's spread of scores; an agreement when the reviewers'
	// rankings have any spread (a tiny model may score everything alike:
	// then none).
	if a := council.Aggregation(c.Aggregation); !a.Valid() {
		t.Errorf("aggregation %q, want mean, borda or confidence", c.Aggregation)
	}
	for _, r := range c.Ranking {
		if r.ScoreSpread == nil || *r.ScoreSpread < 0 || *r.ScoreSpread > 1 {
			t.Errorf("proposal of %s: score spread %v, want one in [0,1]", r.Proposal.AgentID, r.ScoreSpread)
		}
	}
	if a := c.Agreement; a != nil && (*a < 0 || *a > 1) {
		t.Errorf("agreement %v, want in [0,1]", *a)
	}
	if len(c.History) != 3 || len(c.Reviews) != 3 {
		t.Errorf("history: %d proposals, %d critiques; want the 3 first proposals and their 3 critiques", len(c.History), len(c.Reviews))
	}
	if c.Usage.TotalTokens == 0 || c.Usage.PromptTokens == 0 {
		t.Errorf("usage = %+v, want tokens counted", c.Usage)
	}
	// Every prompt of a deliberation starts with the same system message,
	// so the server's prefix cache serves part of the later ones.
	if c.Usage.CachedTokens <= 0 || c.Usage.CachedTokens > c.Usage.PromptTokens {
		t.Errorf("usage = %+v, want 0 < cached tokens <= prompt tokens", c.Usage)
	}
	if c.DurationMS <= 0 {
		t.Errorf("duration_ms = %d", c.DurationMS)
	}
}

func TestDeliberationEndToEnd(t *testing.T) {
	s := startStack(t, false)
	e := request(t, 48)
	start := time.Now()
	id := send(t, s, e)
	c := await(t, s, id)
	t.Logf("3 agents, 1 round: completed in %s, %d tokens", time.Since(start).Round(time.Millisecond), c.Usage.TotalTokens)
	checkCompleted(t, c, "task-42")

	// The stored state agrees, and nothing is left to send: the end is
	// acknowledged in the outbox once sent (and counted), just after the
	// event arrives; watch the stored header until it is.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := s.JS.KeyValue(ctx, s.Topology.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.Watch(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	var d *council.Deliberation
	for d == nil || len(d.Outbox) > 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("stored deliberation %+v 10 s after the end: want it stored with an empty outbox", d)
		case e := <-w.Updates():
			if e == nil {
				continue // the current value came first
			}
			if d, _, err = s.Store.Get(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
	}
	if d.Status != council.StatusCompleted {
		t.Errorf("stored deliberation: status %s, want completed", d.Status)
	}
}

// TestDeliberationEveryEventTwice delivers every event to every function
// twice: there must be exactly one completed event and no doubled proposal.
func TestDeliberationEveryEventTwice(t *testing.T) {
	s := startStack(t, true)
	e := request(t, 32)
	id := send(t, s, e)
	c := await(t, s, id)
	checkCompleted(t, c, "task-42")

	// Let any straggling duplicate land, then count what the broker holds.
	time.Sleep(2 * time.Second)
	counts := countEvents(t, s, id)
	if counts[events.TypeDeliberationCompleted] != 1 {
		t.Errorf("%d deliberation.completed events, want exactly 1", counts[events.TypeDeliberationCompleted])
	}
	if counts[events.TypeDeliberationAccepted] != 1 {
		t.Errorf("%d deliberation.accepted events, want 1", counts[events.TypeDeliberationAccepted])
	}
	if got := counts[events.TypeProposalGenerated]; got != 6 {
		t.Errorf("%d proposal.generated events, want 6 (3 agents × 2 stages, none doubled)", got)
	}
	if got := counts[events.TypeProposalRequested]; got != 6 {
		t.Errorf("%d proposal.requested events, want 6", got)
	}
	// Stage 0's ring (3) and the final review by all pairs (3 × 2).
	if got := counts[events.TypeCritiqueCompleted]; got != 9 {
		t.Errorf("%d critique.completed events, want 9 (3 of stage 0, 6 of the final review by all pairs)", got)
	}
}

// countEvents counts, per type, the broker's events of deliberation id.
func countEvents(t *testing.T, s *stack.Stack, id string) map[string]int {
	t.Helper()
	counts := map[string]int{}
	forEachEvent(t, s, func(e event.Event) {
		var p struct {
			ID string `json:"deliberation_id"`
		}
		if json.Unmarshal(e.Data(), &p) == nil && p.ID == id {
			counts[e.Type()]++
		}
	})
	return counts
}

// TestStructuredKindsEndToEnd runs the two single-pass structured kinds,
// from their request fixtures, through the functions on the real LLM
// server, and validates each result against its output schema (the
// production schema, bounds included).
func TestStructuredKindsEndToEnd(t *testing.T) {
	s := startStack(t, false)
	for _, tc := range []struct {
		fixture string
		kind    council.Kind
	}{
		{"task_extraction.json", council.KindTaskExtraction},
		{"task_derivation.json", council.KindTaskDerivation},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			t.Parallel()
			e, err := events.LoadFixture("deliberation.requested.v1/valid/" + tc.fixture)
			if err != nil {
				t.Fatal(err)
			}
			var data map[string]any
			if err := json.Unmarshal(e.Data(), &data); err != nil {
				t.Fatal(err)
			}
			// The fixture may name a production model; the local server
			// serves one. Room for the longest output the tiny model draws.
			data["constraints"].(map[string]any)["max_tokens"] = 2048
			delete(data, "model")
			for _, a := range data["agents"].([]any) {
				delete(a.(map[string]any), "model")
			}
			if err := e.SetData(event.ApplicationJSON, data); err != nil {
				t.Fatal(err)
			}
			e.SetID(fmt.Sprintf("%s-%d", t.Name(), time.Now().UnixNano()))
			c := await(t, s, send(t, s, e))
			if len(c.Ranking) != 1 {
				t.Fatalf("ranking has %d proposals, want 1 (failures: %+v)", len(c.Ranking), c.Failures)
			}
			out := c.Ranking[0].Proposal.Content
			schema, _ := council.StructuredSchema(tc.kind)
			if err := validateJSON(schema.Schema, out); err != nil {
				t.Errorf("%s result breaks its schema: %v\n%s", tc.kind, err, out)
			}
			t.Logf("%s: %d bytes, usage %+v", tc.kind, len(out), c.Usage)
		})
	}
}

// validateJSON validates the JSON document doc against a JSON Schema.
func validateJSON(schema []byte, doc string) error {
	v, err := events.CompileSchema("output", schema)
	if err != nil {
		return err
	}
	return v.Validate([]byte(doc))
}
