package critique_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"council.dev/events"
	"council.dev/events/eventstest"
	"council.dev/functions/critique"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
	"council.dev/shared/host/hosttest"
)

var update = flag.Bool("update", false, "rewrite the golden replies under testdata/")

var t0 = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

func newFunction(t *testing.T, llm council.Completer) *critique.Function {
	t.Helper()
	f, err := critique.New(llm, critique.WithClock(func() time.Time { return t0 }))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func answering(content string, err error) *counciltest.Completer {
	return &counciltest.Completer{CompleteFunc: func(context.Context, council.CompletionRequest) (council.Completion, error) {
		return council.Completion{Content: content, Model: "fake"}, err
	}}
}

func TestValidFixturesGoldenReplies(t *testing.T) {
	llm := &counciltest.Completer{}
	url := hosttest.Server(t, newFunction(t, llm).Handle).URL
	for _, tc := range eventstest.Cases(t, "critique.requested.v1/valid") {
		t.Run(tc.Name, func(t *testing.T) {
			resp := hosttest.Post(t, url, tc.Event)
			if resp.Status != http.StatusOK || resp.Reply == nil {
				t.Fatalf("status %d (%s), want 200 with a reply", resp.Status, resp.Error)
			}
			_, _, c, err := events.DecodeCritiqueCompleted(*resp.Reply)
			if err != nil {
				t.Fatalf("reply is not critique.completed: %v", err)
			}
			if !c.StartedAt.Equal(t0) {
				t.Errorf("started_at = %v, want the clock's time before the call (%v)", c.StartedAt, t0)
			}
			if c.Overall != 0.7 {
				t.Errorf("overall = %v, want 7/10 normalised to 0.7", c.Overall)
			}
			eventstest.Golden(t, filepath.Join("testdata", tc.Name+".golden.json"), *resp.Reply, *update)
		})
	}
	for _, r := range llm.Requests() {
		if r.Schema == nil || r.Schema.Name != "critique" || !r.Schema.Strict {
			t.Errorf("critique asked without the strict critique schema: %+v", r.Schema)
		}
	}
}

func TestInvalidFixturesAreRejected(t *testing.T) {
	url := hosttest.Server(t, newFunction(t, &counciltest.Completer{}).Handle).URL
	for _, tc := range eventstest.Cases(t, "critique.requested.v1/invalid") {
		t.Run(tc.Name, func(t *testing.T) {
			resp := hosttest.Post(t, url, tc.Event)
			if resp.Status != http.StatusBadRequest || resp.Retryable {
				t.Errorf("status %d retryable=%v, want 400 and not retryable", resp.Status, resp.Retryable)
			}
			if !strings.Contains(resp.Error, tc.Expect) {
				t.Errorf("error %q does not say %q", resp.Error, tc.Expect)
			}
		})
	}
	good := eventstest.Load(t, "critique.requested.v1/valid/stage0.json")
	if resp := hosttest.Post(t, url, good); resp.Status != http.StatusOK {
		t.Fatalf("valid event after invalid ones: status %d (%s)", resp.Status, resp.Error)
	}
}

// TestBadModelOutputIsARetryableFailure: what the model wrote is not a
// critique; another sample may be, so execute may ask again.
func TestBadModelOutputIsARetryableFailure(t *testing.T) {
	cases := []struct {
		name, content, says string
		err                 error
		retryable           bool
	}{
		{name: "not JSON", content: "great proposal!", says: "not valid JSON", retryable: true},
		{name: "truncated JSON", content: `{"scores": {"correctness": 7`, says: "not valid JSON", retryable: true},
		{name: "score out of range", content: counciltest.CritiqueJSON(council.DefaultRubric(), 11), says: "not a number in [0,10]", retryable: true},
		{name: "missing criterion", content: counciltest.CritiqueJSON([]string{"correctness"}, 5), says: "no score for criterion", retryable: true},
		{name: "server unavailable", err: council.Unavailablef("connection refused"), says: "connection refused", retryable: true},
		{name: "request rejected", err: council.Invalidf("status 400"), says: "status 400", retryable: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reply, err := newFunction(t, answering(tc.content, tc.err)).Handle(context.Background(),
				eventstest.Load(t, "critique.requested.v1/valid/stage0.json"))
			if err != nil {
				t.Fatalf("Handle: %v", err)
			}
			if reply.Type() != events.TypeCritiqueFailed {
				t.Fatalf("reply %s, want %s", reply.Type(), events.TypeCritiqueFailed)
			}
			w, err := events.DecodeWorkFailure(*reply)
			if err != nil {
				t.Fatal(err)
			}
			if w.Retryable != tc.retryable || !strings.Contains(w.Error, tc.says) {
				t.Errorf("failure %+v, want retryable=%v and an error saying %q", w, tc.retryable, tc.says)
			}
		})
	}
}

func TestCancelledContextIsTransient(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := newFunction(t, answering("", council.Unavailablef("canceled"))).Handle(ctx,
		eventstest.Load(t, "critique.requested.v1/valid/stage0.json"))
	if !errors.Is(err, council.ErrUnavailable) {
		t.Fatalf("err %v, want ErrUnavailable so the event is delivered again", err)
	}
}

// TestNewRejectsBadOptions: an option that would misconfigure the function
// is an error of New.
func TestNewRejectsBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  critique.Option
		want string
	}{
		{"empty source", critique.WithSource(""), "empty source"},
		{"nil clock", critique.WithClock(nil), "nil clock"},
		{"nil logger", critique.WithLogger(nil), "nil logger"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := critique.New(&counciltest.Completer{}, tc.opt)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// forge returns e with the data field set to value: a request no execute
// would send, as anyone who reaches the broker or the receiver could.
func forge(t *testing.T, e event.Event, field string, value any) event.Event {
	t.Helper()
	var data map[string]any
	if err := json.Unmarshal(e.Data(), &data); err != nil {
		t.Fatal(err)
	}
	data[field] = value
	out := e.Clone()
	if err := out.SetData(event.ApplicationJSON, data); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestForgedIDsNeverReachTheLLM sends critique.requested events whose ids
// would turn into NATS wildcards or separators: each is refused with a
// non-retriable 400 before any LLM call.
func TestForgedIDsNeverReachTheLLM(t *testing.T) {
	llm := &counciltest.Completer{}
	f := newFunction(t, llm)
	url := hosttest.Server(t, f.Handle).URL
	good := eventstest.Load(t, "critique.requested.v1/valid/final_review.json")
	for _, tc := range []struct{ field, value, expect string }{
		{"deliberation_id", "a.*.>", `deliberation id "a.*.>"`},
		{"deliberation_id", "x\ny", `deliberation id "x\ny"`},
		{"key", "c.0.>", `work key "c.0.>"`},
	} {
		t.Run(tc.field, func(t *testing.T) {
			forged := forge(t, good, tc.field, tc.value)
			resp := hosttest.Post(t, url, forged)
			if resp.Status != http.StatusBadRequest || resp.Retryable {
				t.Errorf("status %d retryable=%v, want 400 and not retryable", resp.Status, resp.Retryable)
			}
			if !strings.Contains(resp.Error, tc.expect) {
				t.Errorf("error %q does not name %s", resp.Error, tc.expect)
			}
			_, err := f.Handle(context.Background(), forged)
			if !errors.Is(err, council.ErrInvalid) || council.Retryable(err) {
				t.Errorf("Handle = %v, want a permanent ErrInvalid", err)
			}
		})
	}
	if n := len(llm.Requests()); n != 0 {
		t.Errorf("%d LLM calls for forged requests, want 0", n)
	}
}
