package generate_test

import (
	"context"
	"strings"
	"testing"

	"council.dev/events/eventstest"
	"council.dev/shared/counciltest"
)

// TestProtocolPrompts checks that generate builds the prompts of the
// debate and judge work from the anonymized candidates the event carries,
// naming none of the other agents.
func TestProtocolPrompts(t *testing.T) {
	cases := []struct {
		fixture, agent string
		want           []string
	}{
		{"debate", "dev-1", []string{"latest answers of the other agents", "Answer A:\nA sliding window", "Answer B:\nA token bucket",
			"Your answer (round 0):\nA token bucket per API key"}},
		{"synthesize", "qa-1", []string{"You chair the council. 3 agents answered", "Answer C:\nA fixed window", `"Picked: <its label>"`}},
	}
	for _, tc := range cases {
		t.Run(tc.fixture, func(t *testing.T) {
			llm := &counciltest.Completer{}
			reply, err := newFunction(t, llm, nil).Handle(context.Background(), eventstest.Load(t, "proposal.requested.v1/valid/"+tc.fixture+".json"))
			if err != nil || reply == nil {
				t.Fatalf("Handle = %v, %v; want a reply", reply, err)
			}
			reqs := llm.Requests()
			if len(reqs) != 1 {
				t.Fatalf("%d LLM calls, want 1", len(reqs))
			}
			user := reqs[0].Messages[len(reqs[0].Messages)-1].Content
			for _, w := range tc.want {
				if !strings.Contains(user, w) {
					t.Errorf("prompt does not contain %q:\n%s", w, user)
				}
			}
			for _, other := range []string{"dev-1", "qa-1", "arch-1"} {
				if other != tc.agent && strings.Contains(user, other) {
					t.Errorf("prompt names %s:\n%s", other, user)
				}
			}
		})
	}
}
