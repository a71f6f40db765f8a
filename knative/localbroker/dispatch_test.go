package localbroker

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	eventingduckv1 "knative.dev/eventing/pkg/apis/duck/v1"

	"council.dev/shared/counciltest"
)

const (
	typeA = "dev.council.a.v1"
	typeB = "dev.council.b.v1"
)

// ns lists the attempt numbers of attempts.
func ns(as []Attempt) []int {
	out := make([]int, 0, len(as))
	for _, a := range as {
		out = append(out, a.N)
	}
	return out
}

// equalInts says whether a and b hold the same numbers in the same order.
func equalInts(a, b []int) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}

// upTo is 1, 2, ..., n.
func upTo(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

// TestFilterSelects sends an event of each of two types: each Trigger's
// subscriber receives only its own.
func TestFilterSelects(t *testing.T) {
	a, bs := newSink(t, nil), newSink(t, nil)
	e := startBroker(t, manifestsWith(
		trigger("to-a", typeA, a.URL, nil),
		trigger("to-b", typeB, bs.URL, nil),
	), noRefs)
	mustPost(t, e.URL(), newEvent("1", typeA))
	mustPost(t, e.URL(), newEvent("2", typeB))
	gotA, gotB := a.waitCount(t, 1), bs.waitCount(t, 1)
	if len(gotA) != 1 || gotA[0].Type() != typeA || len(gotB) != 1 || gotB[0].Type() != typeB {
		t.Errorf("a received %v, b received %v; want one event of its own type each", gotA, gotB)
	}
	if ext := gotA[0].Extensions()[arrivalTime]; ext == nil {
		t.Errorf("delivered event has no %s extension", arrivalTime)
	}
}

// TestReplyReentersTheBroker has a subscriber reply to A with a B event,
// in binary mode as our functions do: the B event is delivered to B's
// Trigger.
func TestReplyReentersTheBroker(t *testing.T) {
	a := newSink(t, func(_ int, ev event.Event, w http.ResponseWriter, r *http.Request) {
		reply := newEvent("reply-to-"+ev.ID(), typeB)
		if err := cehttp.WriteResponseWriter(r.Context(), binding.ToMessage(&reply), http.StatusOK, w); err != nil {
			t.Errorf("write reply: %v", err)
		}
	})
	bs := newSink(t, nil)
	e := startBroker(t, manifestsWith(
		trigger("to-a", typeA, a.URL, nil),
		trigger("to-b", typeB, bs.URL, nil),
	), noRefs)
	mustPost(t, e.URL(), newEvent("1", typeA))
	got := bs.waitCount(t, 1)
	if got[0].ID() != "reply-to-1" || got[0].Type() != typeB {
		t.Errorf("b received %s %s; want the reply reply-to-1 %s", got[0].ID(), got[0].Type(), typeB)
	}
}

// TestRetriedThenDeadLettered has a subscriber answer 500 to everything:
// the event is attempted 1 + retry times, in order, then the dead-letter
// sink gets it with Knative's error extensions.
func TestRetriedThenDeadLettered(t *testing.T) {
	for _, policy := range []eventingduckv1.BackoffPolicyType{eventingduckv1.BackoffPolicyLinear, eventingduckv1.BackoffPolicyExponential} {
		t.Run(string(policy), func(t *testing.T) {
			sub, dls := newSink(t, status(http.StatusInternalServerError)), newSink(t, nil)
			e := startBroker(t, manifestsWith(
				trigger("to-a", typeA, sub.URL, spec(3, policy, dls.URL, "")),
			), noRefs)
			mustPost(t, e.URL(), newEvent("1", typeA))
			dl := dls.waitCount(t, 1)[0]
			if got := ns(e.rec.of("to-a", false)); !equalInts(got, upTo(4)) {
				t.Errorf("attempts %v; want %v", got, upTo(4))
			}
			for _, at := range e.rec.of("to-a", false) {
				if at.StatusCode != http.StatusInternalServerError {
					t.Errorf("attempt %d: status %d; want 500", at.N, at.StatusCode)
				}
			}
			checkDeadLetter(t, dl, "1", sub.URL, http.StatusInternalServerError, "answer 500\n")
		})
	}
}

// checkDeadLetter checks a dead letter is event id with the extensions
// Knative's dispatcher adds.
func checkDeadLetter(t *testing.T, dl event.Event, id, dest string, code int, body string) {
	t.Helper()
	if dl.ID() != id {
		t.Errorf("dead letter %s; want %s", dl.ID(), id)
	}
	ext := dl.Extensions()
	if got := fmt.Sprint(ext["knativeerrordest"]); got != dest {
		t.Errorf("knativeerrordest %q; want %q", got, dest)
	}
	if got := fmt.Sprint(ext["knativeerrorcode"]); got != fmt.Sprint(code) {
		t.Errorf("knativeerrorcode %q; want %d", got, code)
	}
	if body == "" {
		return
	}
	if got := fmt.Sprint(ext["knativeerrordata"]); got != base64.StdEncoding.EncodeToString([]byte(body)) {
		t.Errorf("knativeerrordata %q; want base64 of %q", got, body)
	}
}

// TestClientErrorsAreDeadLetteredAtOnce: a 400 or 422 is not retried.
func TestClientErrorsAreDeadLetteredAtOnce(t *testing.T) {
	for _, code := range []int{http.StatusBadRequest, http.StatusUnprocessableEntity} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			sub, dls := newSink(t, status(code)), newSink(t, nil)
			e := startBroker(t, manifestsWith(
				trigger("to-a", typeA, sub.URL, spec(3, eventingduckv1.BackoffPolicyExponential, dls.URL, "")),
			), noRefs)
			mustPost(t, e.URL(), newEvent("bad", typeA))
			dl := dls.waitCount(t, 1)[0]
			if got := ns(e.rec.of("to-a", false)); !equalInts(got, []int{1}) {
				t.Errorf("attempts %v; want [1]", got)
			}
			checkDeadLetter(t, dl, "bad", sub.URL, code, fmt.Sprintf("answer %d\n", code))
		})
	}
}

// TestTimeoutIsRetried has a subscriber slower than the delivery timeout:
// each attempt times out, is retried, and the event is dead-lettered with
// code 500 (no response), as Knative records it.
func TestTimeoutIsRetried(t *testing.T) {
	sub := newSink(t, func(_ int, _ event.Event, w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
		w.WriteHeader(http.StatusOK)
	})
	dls := newSink(t, nil)
	e := startBroker(t, manifestsWith(
		trigger("to-a", typeA, sub.URL, spec(2, eventingduckv1.BackoffPolicyLinear, dls.URL, "PT0.1S")),
	), noRefs)
	mustPost(t, e.URL(), newEvent("slow", typeA))
	dl := dls.waitCount(t, 1)[0]
	as := e.rec.of("to-a", false)
	if got := ns(as); !equalInts(got, upTo(3)) {
		t.Errorf("attempts %v; want %v", got, upTo(3))
	}
	for _, at := range as {
		if at.Err == nil || at.StatusCode != 0 {
			t.Errorf("attempt %d: status %d, error %v; want a timeout", at.N, at.StatusCode, at.Err)
		}
	}
	checkDeadLetter(t, dl, "slow", sub.URL, http.StatusInternalServerError, "")
}

// TestDeadLetterSinkFailureKeepsTheEvent has the dead-letter sink fail
// first: the event stays in JetStream, is redelivered to the sink (not to
// the subscriber again) and lands there.
func TestDeadLetterSinkFailureKeepsTheEvent(t *testing.T) {
	sub := newSink(t, status(http.StatusBadRequest))
	dls := newSink(t, func(n int, _ event.Event, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	e := startBroker(t, manifestsWith(
		trigger("to-a", typeA, sub.URL, spec(0, eventingduckv1.BackoffPolicyLinear, dls.URL, "")),
	), noRefs)
	mustPost(t, e.URL(), newEvent("kept", typeA))
	dls.waitCount(t, 2)
	// The Broker records an attempt once the sink's answer is back: a moment
	// after the sink counted the event.
	counciltest.Within(waitFor, 5*time.Millisecond, func() bool { return len(e.rec.of("to-a", true)) >= 2 })
	dlAttempts := e.rec.of("to-a", true)
	if len(dlAttempts) != 2 || dlAttempts[0].StatusCode != http.StatusServiceUnavailable || dlAttempts[1].StatusCode != http.StatusAccepted {
		t.Errorf("dead-letter attempts %+v; want a 503 then a 202", dlAttempts)
	}
	if got := ns(e.rec.of("to-a", false)); !equalInts(got, []int{1}) {
		t.Errorf("subscriber attempts %v; want [1] (the redelivery goes to the sink only)", got)
	}
}

// TestDuplicateDelivery delivers every accepted event twice.
func TestDuplicateDelivery(t *testing.T) {
	sub := newSink(t, nil)
	e := startBroker(t, manifestsWith(trigger("to-a", typeA, sub.URL, nil)), noRefs, WithDuplicateDelivery())
	mustPost(t, e.URL(), newEvent("twice", typeA))
	got := sub.waitCount(t, 2)
	if got[0].ID() != "twice" || got[1].ID() != "twice" {
		t.Errorf("received %s and %s; want twice the same event", got[0].ID(), got[1].ID())
	}
	if !counciltest.Within(waitFor, 5*time.Millisecond, func() bool { return len(e.rec.of("to-a", false)) == 2 }) {
		t.Fatalf("attempts %+v; want 2", e.rec.of("to-a", false))
	}
	if as := e.rec.of("to-a", false); as[0].Duplicate || !as[1].Duplicate {
		t.Errorf("attempts %+v; want the second marked Duplicate", as)
	}
}

// TestAddTrigger adds a Trigger by hand (as the tests' orchestrator
// subscribes): it receives the events published after.
func TestAddTrigger(t *testing.T) {
	sub := newSink(t, nil)
	e := startBroker(t, manifestsWith(), noRefs)
	if err := e.AddTrigger(t.Context(), *trigger("orchestrator", typeB, sub.URL, nil)); err != nil {
		t.Fatal(err)
	}
	if err := e.AddTrigger(t.Context(), *trigger("orchestrator", typeB, sub.URL, nil)); err == nil {
		t.Error("adding a Trigger of the same name again: no error")
	}
	mustPost(t, e.URL(), newEvent("done", typeB))
	if got := sub.waitCount(t, 1); got[0].ID() != "done" {
		t.Errorf("received %s; want done", got[0].ID())
	}
}

// TestCloseHandsOverInFlight closes a Broker while its subscriber holds a
// delivery: a new Broker on the same stream delivers the event again.
func TestCloseHandsOverInFlight(t *testing.T) {
	arrived := make(chan struct{}, 1)
	sub := newSink(t, func(n int, _ event.Event, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			arrived <- struct{}{}
			<-r.Context().Done() // held until the first Broker closes
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	m := manifestsWith(trigger("to-a", typeA, sub.URL, nil))
	e := startBroker(t, m, noRefs)
	mustPost(t, e.URL(), newEvent("in-flight", typeA))
	select {
	case <-arrived:
	case <-time.After(waitFor):
		t.Fatal("first delivery did not arrive")
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	rec := &attempts{}
	b2, err := New(t.Context(), e.js, m, noRefs, WithMemoryStorage(), WithObserver(rec.observe))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b2.Close() })
	got := sub.waitCount(t, 2)
	if got[1].ID() != "in-flight" {
		t.Errorf("second delivery %s; want in-flight", got[1].ID())
	}
}
