package natsjs_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"council.dev/events"
	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/council"
)

func TestTokenPublisherLandsInTokenStream(t *testing.T) {
	e := newEnv(t)
	// One message per piece: the wire format of each.
	p, err := natsjs.NewTokenPublisher(e.nc, natsjs.WithCoalescing(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxTimeout(t)
	chunks := []council.TokenChunk{
		{DeliberationID: "d0af", AgentID: "agent-1", Stage: 2, Seq: 0, Text: "Hel"},
		{DeliberationID: "d0af", AgentID: "agent-1", Stage: 2, Seq: 1, Text: "lo"},
		{DeliberationID: "d0af", AgentID: "agent-1", Stage: 2, Seq: 2, Final: true},
	}
	for _, c := range chunks {
		if err := p.PublishToken(ctx, c); err != nil {
			t.Fatalf("PublishToken: %v", err)
		}
	}
	eventually(t, 5*time.Second, "3 tokens in COUNCIL_TOKENS", func() bool {
		return streamMsgs(t, e.js, "COUNCIL_TOKENS") == 3
	})

	m := lastMsg(t, e.js, "COUNCIL_TOKENS", "council.stream.d0af.agent-1")
	var got events.TokenMessage
	if err := json.Unmarshal(m.Data, &got); err != nil {
		t.Fatalf("token body: %v", err)
	}
	want := events.TokenMessage{DeliberationID: "d0af", AgentID: "agent-1", Stage: 2, Seq: 2, Final: true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("last token (-want +got):\n%s", diff)
	}
	var raw map[string]any
	if err := json.Unmarshal(m.Data, &raw); err != nil {
		t.Fatal(err)
	}
	wantRaw := map[string]any{
		"deliberation_id": "d0af", "agent_id": "agent-1", "stage": float64(2),
		"seq": float64(2), "text": "", "final": true,
	}
	if diff := cmp.Diff(wantRaw, raw); diff != "" {
		t.Errorf("token wire format (-want +got):\n%s", diff)
	}
	if n := streamMsgs(t, e.js, "COUNCIL_EVENTS"); n != 0 {
		t.Errorf("tokens leaked into the broker stream: %d messages", n)
	}
}

func TestTokenPublisherRejectsUnsafeIDs(t *testing.T) {
	e := newEnv(t)
	p, err := natsjs.NewTokenPublisher(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]council.TokenChunk{
		"dotted deliberation": {DeliberationID: "a.b", AgentID: "x"},
		"wildcard agent":      {DeliberationID: "d", AgentID: ">"},
		"space in agent":      {DeliberationID: "d", AgentID: "a b"},
		"empty agent":         {DeliberationID: "d"},
	} {
		t.Run(name, func(t *testing.T) {
			if err := p.PublishToken(ctxTimeout(t), c); !errors.Is(err, council.ErrInvalid) {
				t.Errorf("PublishToken = %v, want ErrInvalid", err)
			}
		})
	}
}
