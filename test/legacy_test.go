package test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/cli/stack"
	wire "council.dev/events/legacy"
	"council.dev/shared/adapters/legacy"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// peerScores is the overall score (0..10) reviewers give each author of the
// deliberation fixture, so that the ranking is known: dev-1, arch-1, qa-1.
var peerScores = map[string]int{"dev-1": 9, "arch-1": 7, "qa-1": 5}

// scoringModel answers like a cooperative model, scoring each author's
// proposal with peerScores. Review prompts name no author (they are
// anonymous), so each proposal it writes opens with its author's tag, which
// the critique it is asked for then finds in the proposal shown.
func scoringModel() *counciltest.Completer {
	you := regexp.MustCompile(`You are ([A-Za-z0-9_-]+)\.`)
	return &counciltest.Completer{CompleteFunc: func(_ context.Context, req council.CompletionRequest) (council.Completion, error) {
		if req.Schema == nil || req.Schema.Name != "critique" {
			c := counciltest.Answer(req)
			if m := you.FindStringSubmatch(req.Messages[len(req.Messages)-1].Content); m != nil {
				c.Content = "[by " + m[1] + "] " + c.Content
			}
			return c, nil
		}
		user := req.Messages[len(req.Messages)-1].Content
		for author, score := range peerScores {
			if strings.Contains(user, "[by "+author+"]") {
				return council.Completion{
					Content: counciltest.CritiqueJSON(counciltest.RubricOf(req.Schema), score), Model: "fake",
					Usage: council.Usage{PromptTokens: 10, CompletionTokens: 5, TotalTokens: 15},
				}, nil
			}
		}
		return council.Completion{}, fmt.Errorf("critique request shows no proposal of a known author: %q", user)
	}}
}

// TestLegacySubjects runs the local stack with the compatibility publisher
// on and a scoring fake model (no LLM server), and reads what the old
// fleet's consumers would: one agent.response.completed per agent on
// AGENT_RESPONSES, each with its own idempotency key, the deliberation id as
// correlation id and the score and rank of council's ranking.
func TestLegacySubjects(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	s, err := stack.Start(ctx, stack.Config{
		Completer: scoringModel(), StoreDir: t.TempDir(), Legacy: true, SweepEvery: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(s.Close)

	id := send(t, s, request(t, 64))
	completed := await(t, s, id)
	ranking := map[string][2]float64{} // agent → score, rank
	for _, r := range completed.Ranking {
		ranking[r.Proposal.AgentID] = [2]float64{r.Score, float64(r.Rank)}
	}
	if len(ranking) != 3 || completed.Winner != "dev-1" {
		t.Fatalf("ranking %v, winner %q; want 3 agents, dev-1 first", ranking, completed.Winner)
	}

	msgs := legacyMessages(ctx, t, s, 3)
	type got struct {
		Subject, Agent, Role, Status, TaskID string
		Score, Rank                          float64
	}
	var gots []got
	keys := map[string]bool{}
	for _, m := range msgs {
		var env struct {
			EventType      string `json:"event_type"`
			IdempotencyKey string `json:"idempotency_key"`
			CorrelationID  string `json:"correlation_id"`
			Payload        struct {
				TaskID   string  `json:"task_id"`
				AgentID  string  `json:"agent_id"`
				Role     string  `json:"role"`
				Status   string  `json:"status"`
				Score    float64 `json:"score"`
				Rank     int     `json:"rank"`
				Proposal struct {
					Content string `json:"content"`
				} `json:"proposal"`
			} `json:"payload"`
		}
		if err := json.Unmarshal(m.Data, &env); err != nil {
			t.Fatalf("message on %s is not an envelope: %v", m.Subject, err)
		}
		p := env.Payload
		gots = append(gots, got{m.Subject, p.AgentID, p.Role, p.Status, p.TaskID, p.Score, float64(p.Rank)})
		if msgID := m.Header.Get(jetstream.MsgIDHeader); msgID != env.IdempotencyKey || msgID == "" {
			t.Errorf("%s: Nats-Msg-Id %q, idempotency_key %q", p.AgentID, msgID, env.IdempotencyKey)
		}
		keys[env.IdempotencyKey] = true
		if env.EventType != wire.EventCompleted || env.CorrelationID != id || p.Proposal.Content == "" {
			t.Errorf("%s: event_type %q, correlation_id %q (want %s), content %q",
				p.AgentID, env.EventType, env.CorrelationID, id, p.Proposal.Content)
		}
	}
	if len(keys) != 3 {
		t.Errorf("%d distinct idempotency keys among 3 messages", len(keys))
	}
	var want []got
	for _, r := range completed.Ranking {
		sr := ranking[r.Proposal.AgentID]
		want = append(want, got{wire.SubjectCompleted, r.Proposal.AgentID, r.Proposal.Role, "completed", "task-42", sr[0], sr[1]})
	}
	if diff := cmp.Diff(want, gots); diff != "" {
		t.Errorf("legacy messages (-want +got):\n%s", diff)
	}
}

// legacyMessages waits until AGENT_RESPONSES holds n messages (the legacy
// publish follows the completed event) and returns them, checking that no
// more arrive within a sweep or two.
func legacyMessages(ctx context.Context, t *testing.T, s *stack.Stack, n int) []*jetstream.RawStreamMsg {
	t.Helper()
	stream, err := s.JS.Stream(ctx, legacy.DefaultStream)
	if err != nil {
		t.Fatalf("stream %s: %v", legacy.DefaultStream, err)
	}
	for {
		info, err := stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs >= uint64(n) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s holds %d messages, want %d", legacy.DefaultStream, info.State.Msgs, n)
		case <-time.After(100 * time.Millisecond):
		}
	}
	time.Sleep(1200 * time.Millisecond) // two sweeps: nothing is published again
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != uint64(n) {
		t.Fatalf("%s holds %d messages, want %d", legacy.DefaultStream, info.State.Msgs, n)
	}
	out := make([]*jetstream.RawStreamMsg, 0, n)
	for seq := range uint64(n) {
		m, err := stream.GetMsg(ctx, seq+1)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}
