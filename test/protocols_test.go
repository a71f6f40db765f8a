package test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"

	"council.dev/events"
	"council.dev/shared/council"
)

// The deliberation protocols of issue 11 (constraints.protocol, synthesize)
// through the functions on the real LLM server and NATS JetStream: each
// protocol's call pattern, read from the work events on the broker, and
// its result fields.

// protocolRequest is the 3-agent request fixture (dev-1, qa-1, arch-1)
// with the protocol settings of constraints.
func protocolRequest(t *testing.T, name string, constraints map[string]any) event.Event {
	t.Helper()
	e := request(t, 32)
	var data map[string]any
	if err := json.Unmarshal(e.Data(), &data); err != nil {
		t.Fatal(err)
	}
	for k, v := range constraints {
		data["constraints"].(map[string]any)[k] = v
	}
	if err := e.SetData(event.ApplicationJSON, data); err != nil {
		t.Fatal(err)
	}
	e.SetID(e.ID() + "-" + name)
	return e
}

// workCall is one work event as the protocol test counts it.
type workCall struct {
	kind       string // proposal, judge or critique
	stage      int
	mode       string
	candidates int
}

func TestProtocolsEndToEnd(t *testing.T) {
	s := startStack(t, false)
	cases := []struct {
		name        string
		constraints map[string]any
		check       func(t *testing.T, c *events.Completed, calls map[workCall]int)
	}{
		{"vote", map[string]any{"protocol": "vote"}, func(t *testing.T, c *events.Completed, calls map[workCall]int) {
			if calls[workCall{"proposal", 0, "answer", 0}] != 3 || kindCount(calls, "proposal") != 3 {
				t.Errorf("calls %v, want the 3 answers of stage 0 only", calls)
			}
			voted := len(c.Votes) > 0 && c.Votes[0].Count >= 2 && (len(c.Votes) == 1 || c.Votes[1].Count < c.Votes[0].Count)
			if crit := kindCount(calls, "critique"); voted == (crit > 0) {
				t.Errorf("votes %+v and %d critiques: want critiques only when no plurality decides", c.Votes, crit)
			}
			if tallied(c) != 3 || c.RoundsRun != 0 {
				t.Errorf("votes %+v, rounds_run %d; want the 3 answers tallied, 0 rounds", c.Votes, c.RoundsRun)
			}
		}},
		{"debate", map[string]any{"protocol": "debate", "rounds": 1}, func(t *testing.T, c *events.Completed, calls map[workCall]int) {
			if calls[workCall{"proposal", 0, "answer", 0}] != 3 || calls[workCall{"proposal", 1, "debate", 2}] != 3 {
				t.Errorf("calls %v, want 3 answers, then 3 debate updates reading the 2 other answers", calls)
			}
			// The final review: none when a vote decides, else each of the
			// 3 answers reviewed by 1 peer (the ring) or by the 2 others.
			if n := kindCount(calls, "critique"); n != 0 && n != 3 && n != 6 {
				t.Errorf("%d critiques, want none (a vote decides) or the final review's 3 or 6", n)
			}
			if calls[workCall{"critique", 0, "", 0}] != 0 {
				t.Errorf("calls %v: critiques between debate rounds, want none", calls)
			}
			if tallied(c) != 3 || c.RoundsRun != 1 {
				t.Errorf("votes %+v, rounds_run %d; want the 3 final answers tallied, 1 round", c.Votes, c.RoundsRun)
			}
		}},
		{"judge", map[string]any{"protocol": "judge", "judge": "qa-1"}, func(t *testing.T, c *events.Completed, calls map[workCall]int) {
			if calls[workCall{"proposal", 0, "", 0}] != 3 || calls[workCall{"judge", 0, "synthesize", 3}] != 1 || kindCount(calls, "critique") != 0 {
				t.Errorf("calls %v, want 3 proposals and the judge's synthesis of the 3", calls)
			}
			if c.Final == nil || c.Final.AgentID != "qa-1" || strings.TrimSpace(c.Final.Content) == "" || c.Winner != "qa-1" {
				t.Errorf("final %+v, winner %s; want the judge's answer", c.Final, c.Winner)
			}
			if len(c.Ranking) != 3 || c.Ranking[0].Scored {
				t.Errorf("ranking of %d, scored %v; want the 3 candidates unscored", len(c.Ranking), len(c.Ranking) > 0 && c.Ranking[0].Scored)
			}
		}},
		{"critique_revise_synthesize", map[string]any{"synthesize": true, "judge": "arch-1"}, func(t *testing.T, c *events.Completed, calls map[workCall]int) {
			if calls[workCall{"proposal", 0, "", 0}] != 3 || calls[workCall{"proposal", 1, "", 0}] != 3 || calls[workCall{"judge", 1, "synthesize", 3}] != 1 {
				t.Errorf("calls %v, want 3 proposals, 3 revisions and the judge's synthesis of the 3 revisions", calls)
			}
			if c.Final == nil || c.Final.AgentID != "arch-1" || c.RoundsRun != 1 || !c.Ranking[0].Scored {
				t.Errorf("final %+v, rounds_run %d; want the judge's answer after 1 critiqued round", c.Final, c.RoundsRun)
			}
		}},
	}
	ids := map[string]string{}
	for _, tc := range cases {
		ids[tc.name] = send(t, s, protocolRequest(t, tc.name, tc.constraints))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := await(t, s, ids[tc.name])
			if c.Protocol != strings.TrimSuffix(tc.name, "_synthesize") {
				t.Errorf("protocol %q, want %q", c.Protocol, tc.name)
			}
			// First attempts only: a retry is the same call again.
			calls, prompts := map[workCall]int{}, map[string][]string{} // reader → its prompts
			forEachEvent(t, s, func(e event.Event) {
				switch e.Type() {
				case events.TypeProposalRequested:
					r, err := events.DecodeProposalRequested(e)
					if err != nil || r.DeliberationID != ids[tc.name] || r.Attempt != 1 {
						return
					}
					kind := "proposal"
					if council.IsJudgeKey(r.Key) {
						kind = "judge"
					}
					calls[workCall{kind, r.Stage, string(r.Mode), len(r.Candidates)}]++
					prompts[r.Agent.ID] = append(prompts[r.Agent.ID], council.ProposalMessages(r)[1].Content)
				case events.TypeCritiqueRequested:
					r, err := events.DecodeCritiqueRequested(e)
					if err != nil || r.DeliberationID != ids[tc.name] || r.Attempt != 1 {
						return
					}
					calls[workCall{"critique", r.Stage, "", 0}]++
					prompts[r.Reviewer.ID] = append(prompts[r.Reviewer.ID], council.CritiqueMessages(r)[1].Content)
				}
			})
			tc.check(t, c, calls)
			// No prompt names another agent: only the reader's own id heads it.
			for reader, ps := range prompts {
				for _, p := range ps {
					for _, other := range []string{"dev-1", "qa-1", "arch-1"} {
						if other != reader && strings.Contains(p, other) {
							t.Errorf("a prompt of %s names %s:\n%s", reader, other, p)
						}
					}
				}
			}
			t.Logf("%s: %v; votes %+v; %d tokens", tc.name, calls, c.Votes, c.Usage.TotalTokens)
		})
	}
}

// kindCount is the number of calls of kind.
func kindCount(calls map[workCall]int, kind string) int {
	n := 0
	for c, k := range calls {
		if c.kind == kind {
			n += k
		}
	}
	return n
}

// tallied is the number of answers a result's tally counts.
func tallied(c *events.Completed) int {
	n := 0
	for _, v := range c.Votes {
		n += v.Count
	}
	return n
}
