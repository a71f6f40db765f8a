package natsjs_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"

	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/adapters/natsjs/natstest"
	"council.dev/shared/council"
)

const testType = "dev.council.proposal.requested.v1"

func testEnvelope(id string) council.Envelope {
	return council.Envelope{
		ID:      id,
		Type:    testType,
		Source:  "council.dev/test",
		Subject: "task-1",
		Time:    time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		Data:    []byte(`{"agent":"a1","round":1}`),
	}
}

func TestEmitStructuredCloudEventDeduplicated(t *testing.T) {
	e := newEnv(t)
	pub, err := natsjs.NewPublisher(e.js)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxTimeout(t)
	for i := range 2 {
		if err := pub.Emit(ctx, testEnvelope("ev-1")); err != nil {
			t.Fatalf("Emit #%d: %v", i+1, err)
		}
	}
	if n := streamMsgs(t, e.js, "COUNCIL_EVENTS"); n != 1 {
		t.Errorf("COUNCIL_EVENTS holds %d messages after emitting one id twice, want 1", n)
	}

	m := lastMsg(t, e.js, "COUNCIL_EVENTS", "council.events."+testType)
	if got := m.Header.Get("Content-Type"); got != "application/cloudevents+json" {
		t.Errorf("Content-Type = %q", got)
	}
	if got := m.Header.Get("Nats-Msg-Id"); got != "ev-1" {
		t.Errorf("Nats-Msg-Id = %q, want ev-1", got)
	}
	var got map[string]any
	if err := json.Unmarshal(m.Data, &got); err != nil {
		t.Fatalf("body is not JSON: %v", err)
	}
	want := map[string]any{
		"specversion":     "1.0",
		"id":              "ev-1",
		"type":            testType,
		"source":          "council.dev/test",
		"subject":         "task-1",
		"time":            "2025-01-02T03:04:05Z",
		"datacontenttype": "application/json",
		"data":            map[string]any{"agent": "a1", "round": float64(1)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("structured event (-want +got):\n%s", diff)
	}
}

func TestEmitDefaultsTimeToClock(t *testing.T) {
	e := newEnv(t)
	now := time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)
	pub, err := natsjs.NewPublisher(e.js, natsjs.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	env := testEnvelope("ev-t")
	env.Time, env.Data = time.Time{}, nil
	if err := pub.Emit(ctxTimeout(t), env); err != nil {
		t.Fatalf("Emit: %v", err)
	}
	var ev event.Event
	if err := json.Unmarshal(lastMsg(t, e.js, "COUNCIL_EVENTS", "council.events."+testType).Data, &ev); err != nil {
		t.Fatal(err)
	}
	if !ev.Time().Equal(now) {
		t.Errorf("time = %s, want %s", ev.Time(), now)
	}
	if len(ev.Data()) != 0 {
		t.Errorf("data = %q, want none", ev.Data())
	}
}

func TestEmitRejectsInvalidEnvelope(t *testing.T) {
	e := newEnv(t)
	pub, err := natsjs.NewPublisher(e.js)
	if err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*council.Envelope){
		"no id":              func(e *council.Envelope) { e.ID = "" },
		"no type":            func(e *council.Envelope) { e.Type = "" },
		"no source":          func(e *council.Envelope) { e.Source = "" },
		"data not JSON":      func(e *council.Envelope) { e.Data = []byte("not json") },
		"wildcard in type":   func(e *council.Envelope) { e.Type = "dev.council.*" },
		"empty type token":   func(e *council.Envelope) { e.Type = "dev..council" },
		"whitespace in type": func(e *council.Envelope) { e.Type = "dev council" },
	} {
		t.Run(name, func(t *testing.T) {
			env := testEnvelope("ev-bad")
			mutate(&env)
			if err := pub.Emit(ctxTimeout(t), env); !errors.Is(err, council.ErrInvalid) {
				t.Errorf("Emit = %v, want ErrInvalid", err)
			}
		})
	}
	if n := streamMsgs(t, e.js, "COUNCIL_EVENTS"); n != 0 {
		t.Errorf("COUNCIL_EVENTS holds %d messages, want 0", n)
	}
}

func TestEmitWithoutStreamIsUnavailable(t *testing.T) {
	_, _, js := natstest.Start(t) // no Setup: nothing captures council.events.>
	pub, err := natsjs.NewPublisher(js)
	if err != nil {
		t.Fatal(err)
	}
	err = pub.Emit(ctxTimeout(t), testEnvelope("ev-1"))
	if !errors.Is(err, council.ErrUnavailable) {
		t.Errorf("Emit = %v, want ErrUnavailable", err)
	}
}

func TestPublishEventUsesEventIDAsMsgID(t *testing.T) {
	e := newEnv(t)
	pub, err := natsjs.NewPublisher(e.js)
	if err != nil {
		t.Fatal(err)
	}
	ev := event.New()
	ev.SetID("reply-1")
	ev.SetType("dev.council.proposal.generated.v1")
	ev.SetSource("council.dev/generate")
	if err := ev.SetData(event.ApplicationJSON, map[string]string{"content": "x"}); err != nil {
		t.Fatal(err)
	}
	ctx := ctxTimeout(t)
	for range 2 {
		if err := pub.PublishEvent(ctx, ev); err != nil {
			t.Fatalf("PublishEvent: %v", err)
		}
	}
	if n := streamMsgs(t, e.js, "COUNCIL_EVENTS"); n != 1 {
		t.Errorf("COUNCIL_EVENTS holds %d messages, want 1", n)
	}
	m := lastMsg(t, e.js, "COUNCIL_EVENTS", "council.events.dev.council.proposal.generated.v1")
	var got event.Event
	if err := json.Unmarshal(m.Data, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(ev.Data()), string(got.Data())); diff != "" || got.ID() != "reply-1" {
		t.Errorf("round trip: id %q, data diff:\n%s", got.ID(), diff)
	}

	var invalid event.Event // no spec version, id, source or type
	if err := pub.PublishEvent(ctx, invalid); !errors.Is(err, council.ErrInvalid) {
		t.Errorf("PublishEvent(invalid) = %v, want ErrInvalid", err)
	}
}
