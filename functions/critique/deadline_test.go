package critique_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"council.dev/events"
	"council.dev/events/eventstest"
	"council.dev/functions/critique"
	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/adapters/natsjs/natstest"
	"council.dev/shared/counciltest"
)

var now = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

func TestCritiquePastItsDeadlineIsDroppedWithoutACall(t *testing.T) {
	llm := &counciltest.Completer{}
	f, err := critique.New(llm, critique.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	e := eventstest.Load(t, "critique.requested.v1/valid/with_deadline.json")
	var data map[string]any
	if err := json.Unmarshal(e.Data(), &data); err != nil {
		t.Fatal(err)
	}
	data["deadline"] = now.Add(-time.Millisecond).Format(time.RFC3339Nano)
	if err := e.SetData(event.ApplicationJSON, data); err != nil {
		t.Fatal(err)
	}
	reply, err := f.Handle(t.Context(), e)
	if err != nil || reply == nil || reply.Type() != events.TypeCritiqueFailed {
		t.Fatalf("reply %v, error %v; want critique.failed", reply, err)
	}
	var got events.CritiqueFailed
	if err := json.Unmarshal(reply.Data(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Retryable || !strings.Contains(got.Error, "without calling the LLM") {
		t.Errorf("failure %+v, want a non-retryable one saying the deadline passed", got)
	}
	if n := len(llm.Requests()); n != 0 {
		t.Errorf("%d LLM calls, want none", n)
	}
}

func TestDuplicateCritiqueMakesNoSecondCall(t *testing.T) {
	_, _, js := natstest.Start(t)
	if err := natsjs.Setup(t.Context(), js, natsjs.Topology{}); err != nil {
		t.Fatal(err)
	}
	claims, err := natsjs.OpenClaims(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	llm := &counciltest.Completer{}
	f, err := critique.New(llm, critique.WithClaims(claims), critique.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	e := eventstest.Load(t, "critique.requested.v1/valid/with_deadline.json")
	first, err := f.Handle(t.Context(), e)
	if err != nil || first == nil {
		t.Fatalf("first: %v, %v", first, err)
	}
	dup := e.Clone()
	dup.SetID(e.ID() + "-again")
	second, err := f.Handle(t.Context(), dup)
	if err != nil || second == nil || second.ID() != first.ID() {
		t.Fatalf("duplicate: %v, %v; want the first reply again", second, err)
	}
	if n := len(llm.Requests()); n != 1 {
		t.Fatalf("%d LLM calls for one critique delivered twice, want 1", n)
	}
}
