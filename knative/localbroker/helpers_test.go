package localbroker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	eventingduckv1 "knative.dev/eventing/pkg/apis/duck/v1"
	eventingv1 "knative.dev/eventing/pkg/apis/eventing/v1"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"

	"council.dev/knative/kustomized"
	"council.dev/shared/adapters/natsjs/natstest"
	"council.dev/shared/counciltest"
)

// waitFor is how long a test waits for a delivery it expects.
const waitFor = 10 * time.Second

// sink is a subscriber (standing for one of our functions or the
// dead-letter sink): it records every event it receives and answers with
// answer, called with the 1-based count of requests so far.
type sink struct {
	*httptest.Server
	mu     sync.Mutex
	events []event.Event
	answer func(n int, ev event.Event, w http.ResponseWriter, r *http.Request)
}

// newSink starts a sink answering with answer (nil: 200 without a reply).
func newSink(t testing.TB, answer func(n int, ev event.Event, w http.ResponseWriter, r *http.Request)) *sink {
	t.Helper()
	s := &sink{answer: answer}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ev, err := cehttp.NewEventFromHTTPRequest(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.events = append(s.events, *ev)
		n := len(s.events)
		s.mu.Unlock()
		if s.answer == nil {
			w.WriteHeader(http.StatusOK)
			return
		}
		s.answer(n, *ev, w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// status answers every request with code.
func status(code int) func(int, event.Event, http.ResponseWriter, *http.Request) {
	return func(_ int, _ event.Event, w http.ResponseWriter, _ *http.Request) {
		http.Error(w, fmt.Sprintf("answer %d", code), code)
	}
}

// received returns a copy of the events the sink has received.
func (s *sink) received() []event.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]event.Event(nil), s.events...)
}

// waitCount waits until the sink has received at least n events and
// returns them; it fails t when it has not within waitFor.
func (s *sink) waitCount(t *testing.T, n int) []event.Event {
	t.Helper()
	if !counciltest.Within(waitFor, 5*time.Millisecond, func() bool { return len(s.received()) >= n }) {
		t.Fatalf("sink %s received %d events within %v; want %d", s.URL, len(s.received()), waitFor, n)
	}
	return s.received()
}

// attempts records the Broker's delivery attempts.
type attempts struct {
	mu  sync.Mutex
	all []Attempt
}

func (a *attempts) observe(at Attempt) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.all = append(a.all, at)
}

// of returns the attempts at the subscriber (deadLetter false) or at the
// dead-letter sink (true) of trigger.
func (a *attempts) of(trigger string, deadLetter bool) []Attempt {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Attempt
	for _, at := range a.all {
		if at.Trigger == trigger && at.DeadLetter == deadLetter {
			out = append(out, at)
		}
	}
	return out
}

// testNS and testBroker name the Broker of the in-code manifests.
const (
	testNS     = "council"
	testBroker = "council"
)

// manifestsWith is a Broker (without delivery) and triggers.
func manifestsWith(triggers ...*eventingv1.Trigger) *kustomized.Manifests {
	return &kustomized.Manifests{
		Brokers: []*eventingv1.Broker{{
			ObjectMeta: metav1.ObjectMeta{Name: testBroker, Namespace: testNS},
		}},
		Triggers: triggers,
	}
}

// trigger is a Trigger on the test Broker for events of type typ, to the
// subscriber URL sub, with delivery d.
func trigger(name, typ, sub string, d *eventingduckv1.DeliverySpec) *eventingv1.Trigger {
	u, err := apis.ParseURL(sub)
	if err != nil {
		panic(err)
	}
	return &eventingv1.Trigger{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS},
		Spec: eventingv1.TriggerSpec{
			Broker:     testBroker,
			Filter:     &eventingv1.TriggerFilter{Attributes: eventingv1.TriggerFilterAttributes{"type": typ}},
			Subscriber: duckv1.Destination{URI: u},
			Delivery:   d,
		},
	}
}

// spec is a delivery spec with retry retries, policy backoff from 100 ms,
// the dead-letter sink dls ("" for none) and timeout ("" for none).
func spec(retry int32, policy eventingduckv1.BackoffPolicyType, dls, timeout string) *eventingduckv1.DeliverySpec {
	d := &eventingduckv1.DeliverySpec{
		Retry:         &retry,
		BackoffPolicy: &policy,
		BackoffDelay:  ptr("PT0.1S"),
	}
	if dls != "" {
		u, err := apis.ParseURL(dls)
		if err != nil {
			panic(err)
		}
		d.DeadLetterSink = &duckv1.Destination{URI: u}
	}
	if timeout != "" {
		d.Timeout = &timeout
	}
	return d
}

func ptr[T any](v T) *T { return &v }

// noRefs is a Resolver for manifests whose destinations are all URIs.
func noRefs(ref duckv1.KReference) (string, error) {
	return "", fmt.Errorf("no URL for %s %s", ref.Kind, ref.Name)
}

// env is a Broker under test with its attempts recorded and its NATS
// server.
type env struct {
	*Broker
	rec *attempts
	js  jetstream.JetStream
	srv *server.Server
}

// startBroker starts a Broker of m on an embedded NATS server with the
// attempts recorded, and closes it when the test ends.
func startBroker(t testing.TB, m *kustomized.Manifests, resolve Resolver, opts ...Option) env {
	t.Helper()
	srv, _, js := natstest.Start(t)
	rec := &attempts{}
	opts = append([]Option{
		WithObserver(rec.observe),
		WithMemoryStorage(),
		WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))),
	}, opts...)
	b, err := New(context.Background(), js, m, resolve, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return env{Broker: b, rec: rec, js: js, srv: srv}
}

// newEvent is a valid event of type typ with JSON data.
func newEvent(id, typ string) event.Event {
	ev := cloudevents.NewEvent()
	ev.SetID(id)
	ev.SetType(typ)
	ev.SetSource("council.dev/test")
	ev.SetSubject("task-1")
	if err := ev.SetData(cloudevents.ApplicationJSON, map[string]string{"id": id}); err != nil {
		panic(err)
	}
	return ev
}

// post sends ev to url in binary (structured false) or structured mode and
// returns the status code.
func post(t testing.TB, url string, ev event.Event, structured bool) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if structured {
		ctx = binding.WithForceStructured(ctx)
	}
	if err := cehttp.WriteRequest(ctx, binding.ToMessage(&ev), req); err != nil {
		t.Fatal(err)
	}
	return do(t, req)
}

// postRaw sends body with contentType to url and returns the status code.
func postRaw(t *testing.T, url, contentType string, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	return do(t, req)
}

func do(t testing.TB, req *http.Request) int {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer func() { _ = resp.Body.Close() }()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// mustPost posts ev in binary mode and fails t unless it is accepted.
func mustPost(t *testing.T, url string, ev event.Event) {
	t.Helper()
	if code := post(t, url, ev, false); code != http.StatusAccepted {
		t.Fatalf("post %s: %d; want 202", ev.ID(), code)
	}
}
