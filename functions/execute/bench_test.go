package execute_test

import (
	"context"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"

	"council.dev/events"
	"council.dev/events/eventstest"
	"council.dev/functions/execute"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// proposalWave is execute over a fake store and emitter, with the
// deliberation of the request fixture (3 agents) accepted; events answer its
// three proposal requests, and reset puts the deliberation back as it was
// before them.
type proposalWave struct {
	f      *execute.Function
	em     *counciltest.Emitter
	events []event.Event
	reset  func()
}

func newProposalWave(b *testing.B) proposalWave {
	b.Helper()
	ctx := context.Background()
	store, em, c := counciltest.NewStore(), &counciltest.Emitter{}, &clock{t0}
	f, err := execute.New(store, em, execute.WithClock(c.Now))
	if err != nil {
		b.Fatal(err)
	}
	req := eventstest.Load(b, "deliberation.requested.v1/valid/deliberation.json")
	if _, err := f.Handle(ctx, req); err != nil {
		b.Fatal(err)
	}
	id := council.DeliberationID(req.Source(), req.ID())
	start, _, err := store.Get(ctx, id)
	if err != nil {
		b.Fatal(err)
	}
	var wave []event.Event
	for _, env := range em.Sent() {
		r, err := events.DecodeProposalRequested(events.ToEvent(env))
		if err != nil {
			b.Fatal(err)
		}
		p := counciltest.ProposalFor(*start.Work[r.Key])
		p.Role = r.Agent.Role
		wave = append(wave, events.ToEvent(events.NewProposalGenerated("council.dev/generate", r, p, t0)))
	}
	if len(wave) != 3 {
		b.Fatalf("%d proposal requests, want 3", len(wave))
	}
	reset := func() {
		_, rev, err := store.Get(ctx, id)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := store.Update(ctx, start, rev); err != nil {
			b.Fatal(err)
		}
	}
	return proposalWave{f: f, em: em, events: wave, reset: reset}
}

// BenchmarkHandleProposalGenerated is execute's cost per proposal.generated
// event over in-memory fakes: decode, load, transition, compare-and-set,
// send the outbox, clear it. The events come in waves of three; the last of
// each wave completes the stage and fans out the critique requests, so an
// op is the average over a wave. The store is put back between waves with
// the timer stopped.
func BenchmarkHandleProposalGenerated(b *testing.B) {
	w := newProposalWave(b)
	ctx := context.Background()
	n := len(w.events)
	i := 0
	for b.Loop() {
		if i > 0 && i%n == 0 {
			b.StopTimer()
			w.reset()
			b.StartTimer()
		}
		if _, err := w.f.Handle(ctx, w.events[i%n]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	// Every complete wave fanned out one critique request per agent (1 peer).
	critiques := 0
	for _, typ := range w.em.Types() {
		if typ == events.TypeCritiqueRequested {
			critiques++
		}
	}
	if want := i / n * n; critiques != want {
		b.Errorf("%d critique requests after %d events, want %d: the events were not applied", critiques, i, want)
	}
}

// BenchmarkHandleProposalGeneratedBaseline only decodes the same events.
func BenchmarkHandleProposalGeneratedBaseline(b *testing.B) {
	w := newProposalWave(b)
	i := 0
	for b.Loop() {
		if _, _, _, err := events.DecodeProposalGenerated(w.events[i%len(w.events)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
