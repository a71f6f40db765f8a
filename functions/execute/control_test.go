package execute_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"council.dev/events"
	"council.dev/functions/execute"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// worker plays generate and critique for the events execute sends, with
// a fake model, from next on.
type worker struct {
	t    *testing.T
	f    *execute.Function
	em   *counciltest.Emitter
	c    *clock
	llm  *counciltest.Completer
	next int
}

// until answers the work events execute sends until it sends one of type
// stop, and returns that event; it fails the test when execute stops
// sending first. answer, when set, filters the work events answered.
func (w *worker) until(stop string, answer func(event.Event) bool) event.Event {
	w.t.Helper()
	ctx := context.Background()
	for ; ; w.next++ {
		sent := w.em.Sent()
		if w.next >= len(sent) {
			w.t.Fatalf("execute stopped after %d events without %s: %v", len(sent), stop, w.em.Types())
		}
		e := events.ToEvent(sent[w.next])
		if e.Type() == stop {
			w.next++
			return e
		}
		if answer != nil && !answer(e) {
			continue
		}
		w.c.now = w.c.now.Add(time.Second)
		var reply council.Envelope
		switch e.Type() {
		case events.TypeProposalRequested:
			r, err := events.DecodeProposalRequested(e)
			if err != nil {
				w.t.Fatal(err)
			}
			p, err := council.Generate(ctx, w.llm, r, nil)
			if err != nil {
				w.t.Fatal(err)
			}
			reply = events.NewProposalGenerated("test", r, p, w.c.now)
		case events.TypeCritiqueRequested:
			r, err := events.DecodeCritiqueRequested(e)
			if err != nil {
				w.t.Fatal(err)
			}
			cr, err := council.Review(ctx, w.llm, r)
			if err != nil {
				w.t.Fatal(err)
			}
			reply = events.NewCritiqueCompleted("test", r, cr, w.c.now)
		default:
			continue
		}
		if _, err := w.f.Handle(ctx, events.ToEvent(reply)); err != nil {
			w.t.Fatalf("Handle %s: %v", reply.Type, err)
		}
	}
}

func newWorker(t *testing.T) (*worker, *counciltest.Store) {
	// The real time: the model's calls check the deliberation's deadline
	// on the wall clock.
	store, em, c := counciltest.NewStore(), &counciltest.Emitter{}, &clock{time.Now().UTC()}
	return &worker{t: t, f: newFunction(t, store, em, c), em: em, c: c, llm: &counciltest.Completer{}}, store
}

func requestWith(t *testing.T, mut func(*council.Task)) event.Event {
	t.Helper()
	task := counciltest.Task()
	mut(&task)
	return events.ToEvent(events.NewRequest("test", "req-control", task, t0))
}

func count(types []string, typ string) int {
	n := 0
	for _, t := range types {
		if t == typ {
			n++
		}
	}
	return n
}

// answer returns the reply of the fake model to work event e.
func (w *worker) answer(e event.Event) event.Event {
	w.t.Helper()
	r, err := events.DecodeProposalRequested(e)
	if err != nil {
		w.t.Fatal(err)
	}
	p, err := council.Generate(context.Background(), w.llm, r, nil)
	if err != nil {
		w.t.Fatal(err)
	}
	return events.ToEvent(events.NewProposalGenerated("test", r, p, w.c.now))
}

func TestCancelMidRun(t *testing.T) {
	w, store := newWorker(t)
	ctx := context.Background()
	req := requestWith(t, func(*council.Task) {})
	if _, err := w.f.Handle(ctx, req); err != nil {
		t.Fatal(err)
	}
	id := council.DeliberationID(req.Source(), req.ID())
	work := w.em.Sent()
	if len(work) != 3 {
		t.Fatalf("sent %v", w.em.Types())
	}
	// One proposal answered, two in flight when the cancel comes.
	if _, err := w.f.Handle(ctx, w.answer(events.ToEvent(work[0]))); err != nil {
		t.Fatal(err)
	}
	cancel := events.ToEvent(events.NewCancel("test", "cancel-1", id, "the story was dropped", t0))
	for range 2 { // a redelivered cancel
		if _, err := w.f.Handle(ctx, cancel); err != nil {
			t.Fatalf("cancel: %v", err)
		}
	}
	again := events.ToEvent(events.NewCancel("test", "cancel-2", id, "twice", t0))
	if _, err := w.f.Handle(ctx, again); err != nil {
		t.Fatalf("a second cancel: %v", err)
	}
	// The late results are ignored.
	for _, e := range work[1:] {
		if _, err := w.f.Handle(ctx, w.answer(events.ToEvent(e))); err != nil {
			t.Fatalf("a late result: %v", err)
		}
	}
	types := w.em.Types()
	if n := count(types, events.TypeDeliberationCancelled); n != 1 || len(types) != 4 {
		t.Fatalf("sent %v: want the 3 requests and exactly one cancelled", types)
	}
	got, err := events.DecodeCancelled(events.ToEvent(w.em.Sent()[3]))
	if err != nil {
		t.Fatal(err)
	}
	if got.Reason != "cancelled: the story was dropped" || got.Calls != 3 || got.Usage.TotalTokens == 0 {
		t.Errorf("cancelled %+v", got)
	}
	d, _, err := store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != council.StatusCancelled || len(d.Outbox) != 0 || len(d.Proposals) != 1 {
		t.Errorf("stored %s, outbox %v, %d proposals", d.Status, d.Outbox, len(d.Proposals))
	}
	// A cancel of an unknown deliberation is a permanent error.
	unknown := events.ToEvent(events.NewCancel("test", "cancel-3", "dlb-unknown", "", t0))
	if _, err := w.f.Handle(ctx, unknown); err == nil || council.Retryable(err) {
		t.Errorf("cancel of an unknown deliberation: %v, want a permanent error", err)
	}
}

func TestBudgetEndsWithSpend(t *testing.T) {
	w, _ := newWorker(t)
	req := requestWith(t, func(task *council.Task) { task.Constraints.MaxCalls = 8 })
	if _, err := w.f.Handle(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	got, err := events.DecodeCompleted(w.until(events.TypeDeliberationCompleted, nil))
	if err != nil {
		t.Fatal(err)
	}
	if got.Stopped != council.ReasonBudgetExceeded || got.Calls != 6 || got.Usage.TotalTokens == 0 || len(got.Ranking) != 3 {
		t.Errorf("completed: stopped %q, %d calls, %d tokens, %d ranked", got.Stopped, got.Calls, got.Usage.TotalTokens, len(got.Ranking))
	}
	if n := count(w.em.Types(), events.TypeProposalRequested) + count(w.em.Types(), events.TypeCritiqueRequested); n != 6 {
		t.Errorf("%d work events sent, want 6", n)
	}
}

func TestReviewGateFeedbackAndApprove(t *testing.T) {
	w, store := newWorker(t)
	ctx := context.Background()
	req := requestWith(t, func(task *council.Task) {
		task.Constraints.Review = council.ReviewBeforeFinal
		task.Constraints.Timeout = 2 * time.Hour
	})
	if _, err := w.f.Handle(ctx, req); err != nil {
		t.Fatal(err)
	}
	id := council.DeliberationID(req.Source(), req.ID())
	rr, err := events.DecodeReviewRequested(w.until(events.TypeReviewRequested, nil))
	if err != nil {
		t.Fatal(err)
	}
	if rr.Round != 1 || rr.Stage != 1 || len(rr.Ranking) != 3 || !rr.Ranking[0].Scored {
		t.Fatalf("review.requested: round %d stage %d, %d ranked", rr.Round, rr.Stage, len(rr.Ranking))
	}
	// The gate waits: a sweep long after sends nothing.
	w.c.now = w.c.now.Add(time.Hour)
	sent := len(w.em.Sent())
	if err := w.f.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if len(w.em.Sent()) != sent {
		t.Fatalf("the sweep sent %v at the gate", w.em.Types()[sent:])
	}
	feedback := council.ReviewDecision{Round: 1, Decision: council.DecisionFeedback, Feedback: "Say how the counters survive a failover.", Reviewer: "ana"}
	decide := events.ToEvent(events.NewReviewDecided("test", "review-1", id, feedback, w.c.now))
	for range 2 { // redelivered: one round only
		if _, err := w.f.Handle(ctx, decide); err != nil {
			t.Fatal(err)
		}
	}
	var carried []string
	rr2, err := events.DecodeReviewRequested(w.until(events.TypeReviewRequested, func(e event.Event) bool {
		if e.Type() == events.TypeProposalRequested {
			r, err := events.DecodeProposalRequested(e)
			if err == nil && r.Feedback != "" {
				carried = append(carried, r.Agent.ID)
			}
		}
		return true
	}))
	if err != nil {
		t.Fatal(err)
	}
	if rr2.Round != 2 || rr2.Stage != 2 || len(carried) != 3 {
		t.Fatalf("second gate: round %d stage %d; feedback carried to %v", rr2.Round, rr2.Stage, carried)
	}
	approve := council.ReviewDecision{Decision: council.DecisionApprove}
	if _, err := w.f.Handle(ctx, events.ToEvent(events.NewReviewDecided("test", "review-2", id, approve, w.c.now))); err != nil {
		t.Fatal(err)
	}
	got, err := events.DecodeCompleted(w.until(events.TypeDeliberationCompleted, nil))
	if err != nil {
		t.Fatal(err)
	}
	// 3 proposals, 3 ring critiques, then twice 3 revisions and the 6
	// critiques of a final review by all pairs: 24 calls.
	if got.Ranking[0].Proposal.Stage != 2 || got.Calls != 24 {
		t.Errorf("completed: stage %d, %d calls", got.Ranking[0].Proposal.Stage, got.Calls)
	}
	d, _, err := store.Get(ctx, id)
	if err != nil || d.Status != council.StatusCompleted {
		t.Fatalf("stored %v, %v", d, err)
	}
	if !slices.Contains(execute.Types(), events.TypeReviewDecided) || !slices.Contains(execute.Types(), events.TypeDeliberationCancel) {
		t.Error("execute.Types does not list the control events")
	}
}

func TestReviewRejectAndDeadline(t *testing.T) {
	w, _ := newWorker(t)
	ctx := context.Background()
	req := requestWith(t, func(task *council.Task) { task.Constraints.Review = council.ReviewBeforeFinal })
	if _, err := w.f.Handle(ctx, req); err != nil {
		t.Fatal(err)
	}
	id := council.DeliberationID(req.Source(), req.ID())
	w.until(events.TypeReviewRequested, nil)
	reject := council.ReviewDecision{Decision: council.DecisionReject, Reason: "none handles multi-region"}
	if _, err := w.f.Handle(ctx, events.ToEvent(events.NewReviewDecided("test", "review-1", id, reject, w.c.now))); err != nil {
		t.Fatal(err)
	}
	got, err := events.DecodeFailed(w.until(events.TypeDeliberationFailed, nil))
	if err != nil {
		t.Fatal(err)
	}
	if got.Reason != "review_rejected: none handles multi-region" {
		t.Errorf("reason %q", got.Reason)
	}

	// Nobody decides: the deadline fails it.
	w2, _ := newWorker(t)
	if _, err := w2.f.Handle(ctx, req); err != nil {
		t.Fatal(err)
	}
	w2.until(events.TypeReviewRequested, nil)
	w2.c.now = w2.c.now.Add(council.DefaultTimeout)
	if err := w2.f.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	got, err = events.DecodeFailed(w2.until(events.TypeDeliberationFailed, nil))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got.Reason, "while awaiting review") {
		t.Errorf("reason %q", got.Reason)
	}
}

func TestCancelStopsTheRayJob(t *testing.T) {
	r := newRayRig(t, execute.JobTemplate{})
	req := rayRequest(t, nil)
	id := council.DeliberationID(req.Source(), req.ID())
	r.handle(t, req)
	r.runner.SetState(id+"-1", council.JobRunning, "")
	cancel := events.ToEvent(events.NewCancel("test", "cancel-1", id, "", r.clock.now))
	r.handle(t, cancel)
	r.handle(t, cancel)
	if stops := r.runner.Stops(); len(stops) == 0 || stops[0] != id+"-1" {
		t.Fatalf("stops %v, want the job stopped", stops)
	}
	if n := count(r.em.Types(), events.TypeDeliberationCancelled); n != 1 || len(r.em.Types()) != 1 {
		t.Errorf("sent %v, want exactly one cancelled", r.em.Types())
	}
	// The sweep records the job stopped and submits no other attempt
	// (max_retries would allow one for a failed job).
	r.runner.SetState(id+"-1", council.JobStopped, "stopped")
	r.tick(t, time.Second)
	d := r.get(t, id)
	if d.Status != council.StatusCancelled || d.Job.State != council.JobStopped || len(r.runner.Jobs()) != 1 {
		t.Errorf("after the sweep: %s, job %s, jobs %v", d.Status, d.Job.State, r.runner.Jobs())
	}
}

// TestAgentStopsWhenCancelledElsewhere: the Ray job (or pool worker) of a
// deliberation cancelled meanwhile stops at its next transition, cancels
// its calls, and records nothing.
func TestAgentStopsWhenCancelledElsewhere(t *testing.T) {
	store, em := counciltest.NewStore(), &counciltest.Emitter{}
	ctx := context.Background()
	task := agentTask(t, nil)
	task.Backend = council.BackendRay
	d, err := council.New("dlb-cancel-agent", task, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	llm := &counciltest.Completer{CompleteFunc: func(ctx context.Context, req council.CompletionRequest) (council.Completion, error) {
		first := false
		once.Do(func() { first = true })
		if first {
			// execute records the cancel while this call runs.
			s, rev, err := store.Get(context.Background(), "dlb-cancel-agent")
			if err != nil {
				return council.Completion{}, err
			}
			s.Cancel("stop", time.Now())
			if _, err := store.Update(context.Background(), s, rev); err != nil {
				return council.Completion{}, err
			}
			return counciltest.Answer(req), nil
		}
		<-ctx.Done() // the other calls run until the engine cancels them
		return council.Completion{}, council.Unavailablef("cancelled: %v", ctx.Err())
	}}
	agent := &execute.Agent{Store: store, Emitter: em, LLM: llm}
	got, err := agent.RunStored(ctx, "dlb-cancel-agent")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != council.StatusCancelled || len(em.Sent()) != 0 || len(got.Proposals) != 0 {
		t.Errorf("%s, %d events, %d proposals; want the stored cancel, nothing recorded by the job", execute.Summary(got), len(em.Sent()), len(got.Proposals))
	}
	if n := len(llm.Requests()); n != 3 {
		t.Errorf("%d calls, want the 3 first proposals only", n)
	}
}
