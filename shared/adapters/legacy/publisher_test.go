package legacy_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	wire "council.dev/events/legacy"
	"council.dev/shared/adapters/legacy"
	"council.dev/shared/adapters/natsjs/natstest"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

var (
	t0  = time.Date(2025, 12, 7, 11, 15, 25, 412000000, time.UTC)
	pub = t0.Add(time.Minute) // when the messages are published
)

// task is a deliberation of three agents (the format's tests in
// council.dev/events/legacy cover the other kinds).
func task() council.Task {
	return council.Task{
		ID: "task-42", Description: "Design the rate limiter.", Role: "DEV", Kind: council.KindDeliberation,
		Constraints: council.Constraints{StoryID: "story-7", PlanID: "plan-3", Timeout: 600 * time.Second},
		Agents: []council.Agent{
			{ID: "dev-1", Role: "DEV"}, {ID: "qa-1", Role: "QA"}, {ID: "arch-1", Role: "ARCHITECT"},
		},
		Model: "Qwen/Qwen3-0.6B",
	}
}

// running returns a deliberation of task that has just started.
func running(t *testing.T) *council.Deliberation {
	t.Helper()
	d, err := council.New("dlb-0123456789abcdef01234567", task(), t0)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// ended runs a deliberation of task to its end: the agents in fail fail
// their proposals (no retry left), the others answer as counciltest's
// cooperative agents do.
func ended(t *testing.T, fail ...string) *council.Deliberation {
	t.Helper()
	d := running(t)
	now := t0
	for !d.Status.Terminal() {
		if len(d.Outbox) == 0 {
			t.Fatalf("deliberation waits with nothing to send (stage %d %s)", d.Stage, d.Phase)
		}
		now = now.Add(time.Second)
		for _, k := range slices.Clone(d.Outbox) {
			d.Acknowledge(k)
			w, ok := d.Work[k]
			if !ok {
				continue
			}
			var err error
			switch {
			case w.Kind == council.WorkProposal && slices.Contains(fail, w.AgentID):
				_, err = d.RecordFailure(k, w.Attempt, "Failed to call vLLM API: 503", false, now)
			case w.Kind == council.WorkProposal:
				_, err = d.RecordProposal(k, counciltest.ProposalFor(*w), now)
			case w.Kind == council.WorkCritique:
				_, err = d.RecordCritique(k, counciltest.CritiqueFor(*w, d.Task.Constraints.Rubric), now)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return d
}

func ctxTimeout(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newPublisher(t *testing.T, js jetstream.JetStream) *legacy.Publisher {
	t.Helper()
	p, err := legacy.New(js, legacy.WithClock(func() time.Time { return pub }), legacy.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSetupIsIdempotent(t *testing.T) {
	_, _, js := natstest.Start(t)
	p := newPublisher(t, js)
	ctx := ctxTimeout(t)
	for i := range 2 {
		if err := p.Setup(ctx); err != nil {
			t.Fatalf("Setup #%d: %v", i+1, err)
		}
	}
	s, err := js.Stream(ctx, legacy.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	type limits struct {
		Subjects   []string
		MaxAge     time.Duration
		MaxMsgs    int64
		Duplicates time.Duration
		Storage    jetstream.StorageType
		Retention  jetstream.RetentionPolicy
	}
	got := limits{cfg.Subjects, cfg.MaxAge, cfg.MaxMsgs, cfg.Duplicates, cfg.Storage, cfg.Retention}
	want := limits{[]string{"agent.response.>"}, time.Hour, 10000, 10 * time.Minute, jetstream.FileStorage, jetstream.LimitsPolicy}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stream config (-want +got):\n%s", diff)
	}
}

// The fleet's streams init creates AGENT_RESPONSES without a duplicate
// window of its own; Setup brings it to council's configuration.
func TestSetupUpdatesTheFleetStream(t *testing.T) {
	_, _, js := natstest.Start(t)
	ctx := ctxTimeout(t)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "AGENT_RESPONSES", Subjects: []string{"agent.response.>"}, Storage: jetstream.FileStorage,
		MaxAge: time.Hour, MaxMsgs: 10000,
	}); err != nil {
		t.Fatal(err)
	}
	if err := newPublisher(t, js).Setup(ctx); err != nil {
		t.Fatalf("Setup over the fleet's stream: %v", err)
	}
	s, err := js.Stream(ctx, "AGENT_RESPONSES")
	if err != nil {
		t.Fatal(err)
	}
	if d := s.CachedInfo().Config.Duplicates; d != 10*time.Minute {
		t.Errorf("duplicate window %s, want 10m", d)
	}

	// A stream NATS cannot convert (memory storage) is a permanent error.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "OTHER", Subjects: []string{"other.>"}, Storage: jetstream.MemoryStorage,
	}); err != nil {
		t.Fatal(err)
	}
	other, err := legacy.New(js, legacy.WithStream("OTHER"))
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Setup(ctx); !errors.Is(err, council.ErrInvalid) {
		t.Errorf("Setup over a memory stream: err %v, want ErrInvalid", err)
	}
}

func TestPublishTwiceStoresEachMessageOnce(t *testing.T) {
	_, _, js := natstest.Start(t)
	p := newPublisher(t, js)
	ctx := ctxTimeout(t)
	if err := p.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	d := ended(t, "qa-1")
	for i := range 2 {
		if err := p.Publish(ctx, d); err != nil {
			t.Fatalf("Publish #%d: %v", i+1, err)
		}
	}
	want, err := wire.Messages(d, legacy.DefaultProducer, pub)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != 3 || want[0].Subject != wire.SubjectCompleted || want[2].Subject != wire.SubjectFailed {
		t.Fatalf("messages %+v, want two completed responses and one failed", want)
	}
	s, err := js.Stream(ctx, legacy.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != uint64(len(want)) {
		t.Fatalf("stream holds %d messages after publishing twice, want %d", info.State.Msgs, len(want))
	}
	for i, w := range want {
		m, err := s.GetMsg(ctx, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		got := wire.Message{Subject: m.Subject, ID: m.Header.Get(jetstream.MsgIDHeader), Body: m.Data}
		if diff := cmp.Diff(w, got); diff != "" {
			t.Errorf("message %d (-want +got):\n%s", i+1, diff)
		}
		if ct := m.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("message %d: Content-Type %q", i+1, ct)
		}
	}
}

func TestPublishErrors(t *testing.T) {
	_, _, js := natstest.Start(t)
	p := newPublisher(t, js)
	if err := p.Publish(ctxTimeout(t), running(t)); !errors.Is(err, council.ErrInvalid) {
		t.Errorf("running deliberation: err %v, want ErrInvalid", err)
	}
	// No stream captures the subjects (Setup not run): NATS answers no one.
	if err := p.Publish(ctxTimeout(t), ended(t)); !errors.Is(err, council.ErrUnavailable) || !council.Retryable(err) {
		t.Errorf("no stream: err %v, want ErrUnavailable", err)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	_, _, js := natstest.Start(t)
	if _, err := legacy.New(nil); err == nil {
		t.Error("New(nil) succeeded")
	}
	for name, opt := range map[string]legacy.Option{
		"stream with a dot": legacy.WithStream("AGENT.RESPONSES"),
		"empty stream":      legacy.WithStream(""),
		"empty producer":    legacy.WithProducer(""),
		"no replicas":       legacy.WithReplicas(0),
		"nil logger":        legacy.WithLogger(nil),
		"nil clock":         legacy.WithClock(nil),
	} {
		if _, err := legacy.New(js, opt); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}
