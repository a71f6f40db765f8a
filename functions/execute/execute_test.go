package execute_test

import (
	"context"
	"errors"
	"flag"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"

	"council.dev/events"
	"council.dev/events/eventstest"
	"council.dev/functions/execute"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
	"council.dev/shared/host"
	"council.dev/shared/host/hosttest"
)

var t0 = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func newFunction(t *testing.T, store council.Store, em council.Emitter, c *clock) *execute.Function {
	t.Helper()
	f, err := execute.New(store, em, execute.WithClock(c.Now), execute.WithResendAfter(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func fixture(t *testing.T, path string) event.Event { return eventstest.Load(t, path) }

func TestRequestIsAcceptedAndFansOut(t *testing.T) {
	store, em, c := counciltest.NewStore(), &counciltest.Emitter{}, &clock{t0}
	f := newFunction(t, store, em, c)
	req := fixture(t, "deliberation.requested.v1/valid/deliberation.json")

	reply, err := f.Handle(context.Background(), req)
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	acc, err := events.DecodeAccepted(*reply)
	if err != nil {
		t.Fatalf("reply is not deliberation.accepted: %v", err)
	}
	id := council.DeliberationID(req.Source(), req.ID())
	want := events.Accepted{DeliberationID: id, TaskID: "task-42", Status: "running", Backend: "functions"}
	if diff := cmp.Diff(want, acc); diff != "" {
		t.Errorf("accepted (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{events.TypeProposalRequested, events.TypeProposalRequested, events.TypeProposalRequested}, em.Types()); diff != "" {
		t.Errorf("fan-out (-want +got):\n%s", diff)
	}
	d, _, err := store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Outbox) != 0 {
		t.Errorf("outbox after a successful fan-out = %v, want empty", d.Outbox)
	}

	// The same request again (a retry by the broker) starts nothing new.
	if _, err := f.Handle(context.Background(), req); err != nil {
		t.Fatalf("second Handle: %v", err)
	}
	if n := len(em.Sent()); n != 3 {
		t.Errorf("%d events sent after a duplicate request, want 3", n)
	}
}

var update = flag.Bool("update", false, "rewrite the golden replies under testdata/")

// TestRequestGoldenReplies sends every valid request fixture through the
// HTTP host and compares the deliberation.accepted reply with its golden file.
func TestRequestGoldenReplies(t *testing.T) {
	f := newFunction(t, counciltest.NewStore(), &counciltest.Emitter{}, &clock{t0})
	url := hosttest.Server(t, f.Handle).URL
	for _, tc := range eventstest.Cases(t, "deliberation.requested.v1/valid") {
		if tc.Name == "ray_backend" {
			continue // needs a job runner: see ray_test.go
		}
		t.Run(tc.Name, func(t *testing.T) {
			resp := hosttest.Post(t, url, tc.Event)
			if resp.Status != http.StatusOK || resp.Reply == nil {
				t.Fatalf("status %d (%s), want 200 with a reply", resp.Status, resp.Error)
			}
			eventstest.Golden(t, filepath.Join("testdata", tc.Name+".golden.json"), *resp.Reply, *update)
		})
	}
	for _, tc := range eventstest.Cases(t, "deliberation.requested.v1/invalid") {
		t.Run(tc.Name, func(t *testing.T) {
			resp := hosttest.Post(t, url, tc.Event)
			if resp.Status != http.StatusBadRequest || resp.Retryable {
				t.Errorf("status %d retryable=%v, want 400 and not retryable", resp.Status, resp.Retryable)
			}
		})
	}
}

func TestEmitFailureKeepsTheOutboxAndRetries(t *testing.T) {
	store, c := counciltest.NewStore(), &clock{t0}
	broken := true
	em := &counciltest.Emitter{EmitFunc: func(context.Context, council.Envelope) error {
		if broken {
			return council.Unavailablef("broker down")
		}
		return nil
	}}
	f := newFunction(t, store, em, c)
	req := fixture(t, "deliberation.requested.v1/valid/deliberation.json")

	_, err := f.Handle(context.Background(), req)
	if !errors.Is(err, council.ErrUnavailable) || host.StatusFor(err) != 503 {
		t.Fatalf("Handle with the broker down: err %v (status %d), want ErrUnavailable / 503", err, host.StatusFor(err))
	}
	d, _, err := store.Get(context.Background(), council.DeliberationID(req.Source(), req.ID()))
	if err != nil {
		t.Fatalf("the deliberation must be stored before anything is sent: %v", err)
	}
	if len(d.Outbox) != 3 {
		t.Fatalf("outbox = %v, want the 3 unsent requests", d.Outbox)
	}
	broken = false
	if _, err := f.Handle(context.Background(), req); err != nil {
		t.Fatalf("redelivered request: %v", err)
	}
	if n := len(em.Sent()); n != 3 {
		t.Errorf("%d events sent once the broker is back, want 3", n)
	}
}

func TestInvalidEventsArePermanentErrors(t *testing.T) {
	store, em, c := counciltest.NewStore(), &counciltest.Emitter{}, &clock{t0}
	f := newFunction(t, store, em, c)
	cases := eventstest.Cases(t, "deliberation.requested.v1/invalid")
	cases = append(cases, eventstest.Cases(t, "proposal.generated.v1/invalid")...)
	cases = append(cases, eventstest.Cases(t, "critique.completed.v1/invalid")...)
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			_, err := f.Handle(context.Background(), tc.Event)
			if err == nil {
				t.Fatal("Handle accepted an invalid event")
			}
			if council.Retryable(err) || host.StatusFor(err) >= 500 {
				t.Errorf("err %v: retryable (status %d), want permanent", err, host.StatusFor(err))
			}
			// execute routes by type: an event of another type is refused
			// before its data is decoded.
			if tc.Name != "wrong_event_type" && !strings.Contains(err.Error(), tc.Expect) {
				t.Errorf("err %q does not say %q", err, tc.Expect)
			}
		})
	}
	// Bad input blocks nothing: a good request still goes through.
	if _, err := f.Handle(context.Background(), fixture(t, "deliberation.requested.v1/valid/minimal.json")); err != nil {
		t.Fatalf("valid request after invalid ones: %v", err)
	}
}

func TestUnknownTypeAndBackend(t *testing.T) {
	f := newFunction(t, counciltest.NewStore(), &counciltest.Emitter{}, &clock{t0})
	e := fixture(t, "deliberation.requested.v1/valid/deliberation.json")
	e.SetType("dev.council.unknown.v1")
	if _, err := f.Handle(context.Background(), e); !errors.Is(err, council.ErrInvalid) {
		t.Errorf("unknown type: err %v, want ErrInvalid", err)
	}
	if _, err := f.Handle(context.Background(), fixture(t, "deliberation.requested.v1/valid/ray_backend.json")); !errors.Is(err, council.ErrInvalid) {
		t.Errorf("ray backend without a job runner: err %v, want ErrInvalid", err)
	}
}

// TestFullDeliberationWithFakeModel drives execute with the replies
// generate and critique would send, produced from the domain with a fake
// model, and checks the completed event.
func TestFullDeliberationWithFakeModel(t *testing.T) {
	store, em, c := counciltest.NewStore(), &counciltest.Emitter{}, &clock{t0}
	f := newFunction(t, store, em, c)
	llm := &counciltest.Completer{}
	ctx := context.Background()
	if _, err := f.Handle(ctx, fixture(t, "deliberation.requested.v1/valid/deliberation.json")); err != nil {
		t.Fatal(err)
	}
	var completed *event.Event
	for i := 0; completed == nil; i++ {
		sent := em.Sent()
		if i >= len(sent) {
			t.Fatalf("execute stopped after %d events without completing: %v", len(sent), em.Types())
		}
		c.now = c.now.Add(time.Second)
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
			reply = events.NewProposalGenerated("test", r, p, c.now)
		case events.TypeCritiqueRequested:
			r, err := events.DecodeCritiqueRequested(e)
			if err != nil {
				t.Fatal(err)
			}
			cr, err := council.Review(ctx, llm, r)
			if err != nil {
				t.Fatal(err)
			}
			reply = events.NewCritiqueCompleted("test", r, cr, c.now)
		case events.TypeDeliberationCompleted:
			completed = &e
			continue
		default:
			t.Fatalf("unexpected event %s", e.Type())
		}
		// Deliver every reply twice: the second changes nothing.
		for range 2 {
			if _, err := f.Handle(ctx, events.ToEvent(reply)); err != nil {
				t.Fatalf("Handle %s: %v", reply.Type, err)
			}
		}
	}
	out, err := events.DecodeCompleted(*completed)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Ranking) != 3 || out.Winner != out.Ranking[0].Proposal.AgentID {
		t.Errorf("ranking of %d, winner %q", len(out.Ranking), out.Winner)
	}
	counts := map[string]int{}
	for _, typ := range em.Types() {
		counts[typ]++
	}
	// 3 ring critiques of the first proposals, 6 of the final review by
	// all pairs.
	want := map[string]int{
		events.TypeProposalRequested: 6, events.TypeCritiqueRequested: 9, events.TypeDeliberationCompleted: 1,
	}
	if diff := cmp.Diff(want, counts); diff != "" {
		t.Errorf("events sent (-want +got):\n%s", diff)
	}
}

func TestSweepFailsOverdueDeliberations(t *testing.T) {
	store, em, c := counciltest.NewStore(), &counciltest.Emitter{}, &clock{t0}
	f := newFunction(t, store, em, c)
	if _, err := f.Handle(context.Background(), fixture(t, "deliberation.requested.v1/valid/deliberation.json")); err != nil {
		t.Fatal(err)
	}
	tick := fixture(t, "sweep.tick.v1/valid/tick.json")

	c.now = t0.Add(2 * time.Minute) // past resend-after, before the 600 s timeout
	if _, err := f.Handle(context.Background(), tick); err != nil {
		t.Fatal(err)
	}
	if n := len(em.Sent()); n != 6 {
		t.Errorf("%d events after a sweep past resend-after, want 3 + 3 re-sent", n)
	}
	c.now = t0.Add(11 * time.Minute)
	if _, err := f.Handle(context.Background(), tick); err != nil {
		t.Fatal(err)
	}
	sent := em.Sent()
	last := events.ToEvent(sent[len(sent)-1])
	failed, err := events.DecodeFailed(last)
	if err != nil {
		t.Fatalf("last event after the deadline is not deliberation.failed: %v", err)
	}
	if !strings.Contains(failed.Reason, "timeout") {
		t.Errorf("reason %q does not mention the timeout", failed.Reason)
	}
}

// TestNewRejectsBadOptions: an option that would misconfigure the function
// is an error of New, naming the option's problem, instead of a surprise
// later (a zero resend delay would resend every request on every tick).
func TestNewRejectsBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  execute.Option
		want string
	}{
		{"zero resend", execute.WithResendAfter(0), "want a positive duration"},
		{"negative resend", execute.WithResendAfter(-time.Second), "want a positive duration"},
		{"empty source", execute.WithSource(""), "empty source"},
		{"nil clock", execute.WithClock(nil), "nil clock"},
		{"nil logger", execute.WithLogger(nil), "nil logger"},
		{"unnamed check", execute.WithCheck("", func(context.Context) error { return nil }), "empty name"},
		{"nil job runner", execute.WithJobRunner(nil, execute.JobTemplate{}), "nil job runner"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := execute.New(counciltest.NewStore(), &counciltest.Emitter{}, tc.opt)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New error %v, want one saying %q", err, tc.want)
			}
		})
	}
	if _, err := execute.New(counciltest.NewStore(), &counciltest.Emitter{},
		execute.WithResendAfter(time.Minute), execute.WithCheck("llm", nil)); err != nil {
		t.Errorf("New with good options: %v", err)
	}
}
