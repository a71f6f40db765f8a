package execute_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"council.dev/events"
	"council.dev/functions/execute"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// fakeLegacy records what the outbox asks the legacy publisher to publish;
// Err, when set, is returned (the call is still recorded).
type fakeLegacy struct {
	mu    sync.Mutex
	Err   error
	calls []string
}

func (f *fakeLegacy) Publish(_ context.Context, d *council.Deliberation) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, d.ID+" "+string(d.Status))
	return f.Err
}

func (f *fakeLegacy) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeLegacy) SetErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Err = err
}

// answerAll plays generate and critique with a fake model: it answers every
// request execute sends until execute emits deliberation.completed, and
// returns the errors Handle gave.
func answerAll(t *testing.T, f *execute.Function, em *counciltest.Emitter) []error {
	t.Helper()
	ctx, llm := context.Background(), &counciltest.Completer{}
	var errs []error
	for i := 0; ; i++ {
		sent := em.Sent()
		if i >= len(sent) {
			t.Fatalf("execute stopped after %d events without completing: %v", len(sent), em.Types())
		}
		e := events.ToEvent(sent[i])
		var reply council.Envelope
		switch e.Type() {
		case events.TypeProposalRequested:
			r, err := events.DecodeProposalRequested(e)
			if err != nil {
				t.Fatal(err)
			}
			p, err := council.Generate(ctx, llm, r, nil)
			if err != nil {
				t.Fatal(err)
			}
			reply = events.NewProposalGenerated("test", r, p, t0)
		case events.TypeCritiqueRequested:
			r, err := events.DecodeCritiqueRequested(e)
			if err != nil {
				t.Fatal(err)
			}
			c, err := council.Review(ctx, llm, r)
			if err != nil {
				t.Fatal(err)
			}
			reply = events.NewCritiqueCompleted("test", r, c, t0)
		case events.TypeDeliberationCompleted:
			return errs
		default:
			t.Fatalf("unexpected event %s", e.Type())
		}
		if _, err := f.Handle(ctx, events.ToEvent(reply)); err != nil {
			errs = append(errs, err)
		}
	}
}

func TestLegacyPublishedOnceWhenTheDeliberationCompletes(t *testing.T) {
	store, em, c, lp := counciltest.NewStore(), &counciltest.Emitter{}, &clock{t0}, &fakeLegacy{}
	f, err := execute.New(store, em, execute.WithClock(c.Now), execute.WithLegacy(lp))
	if err != nil {
		t.Fatal(err)
	}
	req := fixture(t, "deliberation.requested.v1/valid/deliberation.json")
	if _, err := f.Handle(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if errs := answerAll(t, f, em); len(errs) != 0 {
		t.Fatalf("Handle errors: %v", errs)
	}
	id := council.DeliberationID(req.Source(), req.ID())
	// Sweeps after the end publish nothing more.
	for range 2 {
		if err := f.Sweep(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff([]string{id + " completed"}, lp.Calls()); diff != "" {
		t.Errorf("legacy publishes (-want +got):\n%s", diff)
	}
}

func TestLegacyFailureKeepsTheOutboxKeyAndRetries(t *testing.T) {
	store, em, c := counciltest.NewStore(), &counciltest.Emitter{}, &clock{t0}
	lp := &fakeLegacy{Err: council.Unavailablef("nats: no responders")}
	f, err := execute.New(store, em, execute.WithClock(c.Now), execute.WithLegacy(lp))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	req := fixture(t, "deliberation.requested.v1/valid/deliberation.json")
	if _, err := f.Handle(ctx, req); err != nil {
		t.Fatal(err)
	}
	errs := answerAll(t, f, em)
	if len(errs) != 1 || !errors.Is(errs[0], council.ErrUnavailable) || !council.Retryable(errs[0]) {
		t.Fatalf("Handle errors %v, want one retryable error (the last result's)", errs)
	}
	id := council.DeliberationID(req.Source(), req.ID())
	d, _, err := store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != council.StatusCompleted || !cmp.Equal(d.Outbox, []string{council.OutboxCompleted}) {
		t.Fatalf("stored %s with outbox %v, want completed with the key kept", d.Status, d.Outbox)
	}

	// NATS is back: the next sweep publishes again and clears the key.
	lp.SetErr(nil)
	if err := f.Sweep(ctx); err != nil {
		t.Fatalf("sweep: %v", err)
	}
	if err := f.Sweep(ctx); err != nil {
		t.Fatalf("second sweep: %v", err)
	}
	if diff := cmp.Diff([]string{id + " completed", id + " completed"}, lp.Calls()); diff != "" {
		t.Errorf("legacy publishes (-want +got):\n%s", diff)
	}
	if d, _, err = store.Get(ctx, id); err != nil || len(d.Outbox) != 0 {
		t.Errorf("outbox %v (%v), want empty once published", d.Outbox, err)
	}
}

func TestLegacyPublishedWhenTheDeliberationFails(t *testing.T) {
	store, em, c, lp := counciltest.NewStore(), &counciltest.Emitter{}, &clock{t0}, &fakeLegacy{}
	f, err := execute.New(store, em, execute.WithClock(c.Now), execute.WithLegacy(lp))
	if err != nil {
		t.Fatal(err)
	}
	req := fixture(t, "deliberation.requested.v1/valid/deliberation.json")
	if _, err := f.Handle(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	c.now = t0.Add(11 * time.Minute) // past the 600 s timeout
	if err := f.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	id := council.DeliberationID(req.Source(), req.ID())
	if diff := cmp.Diff([]string{id + " failed"}, lp.Calls()); diff != "" {
		t.Errorf("legacy publishes (-want +got):\n%s", diff)
	}
}

func TestAgentPublishesLegacy(t *testing.T) {
	store, em, c, lp := counciltest.NewStore(), &counciltest.Emitter{}, &clock{t0}, &fakeLegacy{}
	agent := &execute.Agent{Store: store, Emitter: em, LLM: &counciltest.Completer{}, Now: c.Now, Legacy: lp}
	if _, err := agent.Run(context.Background(), "dlb-agent", agentTask(t, nil)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"dlb-agent completed"}, lp.Calls()); diff != "" {
		t.Errorf("legacy publishes (-want +got):\n%s", diff)
	}
}
