package generate_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"council.dev/events"
	"council.dev/events/eventstest"
	"council.dev/functions/generate"
	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/adapters/natsjs/natstest"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// withDeadline returns the stage-0 fixture with its deadline set to at.
func withDeadline(t *testing.T, at time.Time) event.Event {
	t.Helper()
	e := eventstest.Load(t, "proposal.requested.v1/valid/stage0.json")
	var data map[string]any
	if err := json.Unmarshal(e.Data(), &data); err != nil {
		t.Fatal(err)
	}
	data["deadline"] = at.UTC().Format(time.RFC3339Nano)
	if err := e.SetData(event.ApplicationJSON, data); err != nil {
		t.Fatal(err)
	}
	return e
}

func failure(t *testing.T, reply *event.Event) events.ProposalFailed {
	t.Helper()
	if reply == nil || reply.Type() != events.TypeProposalFailed {
		t.Fatalf("reply %v, want a proposal.failed", reply)
	}
	var f events.ProposalFailed
	if err := json.Unmarshal(reply.Data(), &f); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestWorkPastItsDeadlineIsDroppedWithoutACall(t *testing.T) {
	llm := &counciltest.Completer{}
	f := newFunction(t, llm, nil)
	reply, err := f.Handle(t.Context(), withDeadline(t, t0.Add(-time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	got := failure(t, reply)
	if got.Retryable || !strings.Contains(got.Error, "deadline") || !strings.Contains(got.Error, "without calling the LLM") {
		t.Errorf("failure %+v, want a non-retryable one saying the deadline passed", got)
	}
	if n := len(llm.Requests()); n != 0 {
		t.Errorf("%d LLM calls, want none", n)
	}
}

func TestTheDeadlineBoundsTheCall(t *testing.T) {
	// The clock says the deadline is ahead; the call outlives it.
	deadline := time.Now().Add(300 * time.Millisecond)
	var bounded bool
	llm := &counciltest.Completer{CompleteFunc: func(ctx context.Context, _ council.CompletionRequest) (council.Completion, error) {
		d, ok := ctx.Deadline()
		bounded = ok && !d.After(deadline)
		<-ctx.Done()
		return council.Completion{}, council.Unavailablef("%v", ctx.Err())
	}}
	f, err := generate.New(llm, generate.WithClock(func() time.Time { return deadline.Add(-time.Minute) }))
	if err != nil {
		t.Fatal(err)
	}
	reply, err := f.Handle(t.Context(), withDeadline(t, deadline))
	if err != nil {
		t.Fatal(err)
	}
	got := failure(t, reply)
	if !bounded {
		t.Error("the LLM call's context has no deadline at the deliberation's")
	}
	if got.Retryable || !strings.Contains(got.Error, "passed during the call") {
		t.Errorf("failure %+v, want a non-retryable one: the deadline passed during the call", got)
	}
}

func TestOlderProducersWithoutADeadline(t *testing.T) {
	llm := &counciltest.Completer{CompleteFunc: func(ctx context.Context, req council.CompletionRequest) (council.Completion, error) {
		if _, ok := ctx.Deadline(); ok {
			return council.Completion{}, errors.New("a deadline nobody set")
		}
		return counciltest.Answer(req), nil
	}}
	reply, err := newFunction(t, llm, nil).Handle(t.Context(), eventstest.Load(t, "proposal.requested.v1/valid/stage0.json"))
	if err != nil || reply == nil || reply.Type() != events.TypeProposalGenerated {
		t.Fatalf("reply %v, error %v; want proposal.generated", reply, err)
	}
}

func TestDuplicateWorkMakesNoSecondCall(t *testing.T) {
	_, _, js := natstest.Start(t)
	if err := natsjs.Setup(t.Context(), js, natsjs.Topology{}); err != nil {
		t.Fatal(err)
	}
	claims, err := natsjs.OpenClaims(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	llm := &counciltest.Completer{}
	f, err := generate.New(llm, generate.WithClaims(claims), generate.WithClock(func() time.Time { return t0 }))
	if err != nil {
		t.Fatal(err)
	}
	e := eventstest.Load(t, "proposal.requested.v1/valid/with_deadline_and_fallback.json")
	first, err := f.Handle(t.Context(), e)
	if err != nil || first == nil {
		t.Fatalf("first: %v, %v", first, err)
	}
	// The same work again, as a new event (another id: no broker dedupe).
	dup := e.Clone()
	dup.SetID(e.ID() + "-again")
	second, err := f.Handle(t.Context(), dup)
	if err != nil || second == nil {
		t.Fatalf("duplicate: %v, %v", second, err)
	}
	if n := len(llm.Requests()); n != 1 {
		t.Fatalf("%d LLM calls for one work item delivered twice, want 1", n)
	}
	if first.ID() != second.ID() || string(first.Data()) != string(second.Data()) {
		t.Errorf("the duplicate's reply %s differs from the first %s", second.ID(), first.ID())
	}
	// Another attempt is new work.
	var data map[string]any
	_ = json.Unmarshal(e.Data(), &data)
	data["attempt"] = 2
	retry := e.Clone()
	retry.SetID(e.ID() + "-2")
	if err := retry.SetData(event.ApplicationJSON, data); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Handle(t.Context(), retry); err != nil {
		t.Fatal(err)
	}
	if n := len(llm.Requests()); n != 2 {
		t.Fatalf("%d LLM calls after attempt 2, want 2", n)
	}
}

func TestFallbackModelsReachTheLLM(t *testing.T) {
	llm := &counciltest.Completer{}
	if _, err := newFunction(t, llm, nil).Handle(t.Context(), eventstest.Load(t, "proposal.requested.v1/valid/with_deadline_and_fallback.json")); err != nil {
		t.Fatal(err)
	}
	reqs := llm.Requests()
	if len(reqs) != 1 || len(reqs[0].Fallbacks) != 1 || reqs[0].Fallbacks[0] != "council-tiny" {
		t.Fatalf("requests %+v, want one with fallback council-tiny", reqs)
	}
}
