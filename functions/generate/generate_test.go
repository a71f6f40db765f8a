package generate_test

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
	"github.com/google/go-cmp/cmp"

	"council.dev/events"
	"council.dev/events/eventstest"
	"council.dev/functions/generate"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
	"council.dev/shared/host/hosttest"
)

var update = flag.Bool("update", false, "rewrite the golden replies under testdata/")

var t0 = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

func newFunction(t *testing.T, llm council.Completer, sink council.TokenSink) *generate.Function {
	t.Helper()
	f, err := generate.New(llm, generate.WithTokenSink(sink), generate.WithClock(func() time.Time { return t0 }))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestValidFixturesGoldenReplies sends every valid proposal.requested
// fixture through the HTTP host and compares the reply with its golden file.
func TestValidFixturesGoldenReplies(t *testing.T) {
	sink := &counciltest.TokenSink{}
	url := hosttest.Server(t, newFunction(t, &counciltest.Completer{}, sink).Handle).URL
	for _, tc := range eventstest.Cases(t, "proposal.requested.v1/valid") {
		t.Run(tc.Name, func(t *testing.T) {
			resp := hosttest.Post(t, url, tc.Event)
			if resp.Status != http.StatusOK || resp.Reply == nil {
				t.Fatalf("status %d (%s), want 200 with a reply", resp.Status, resp.Error)
			}
			if resp.Reply.Type() != events.TypeProposalGenerated {
				t.Fatalf("reply type %s, want %s", resp.Reply.Type(), events.TypeProposalGenerated)
			}
			eventstest.Golden(t, filepath.Join("testdata", tc.Name+".golden.json"), *resp.Reply, *update)
		})
	}
	if len(sink.Chunks()) == 0 {
		t.Error("no token streamed")
	}
}

// TestInvalidFixturesAreRejected checks that every invalid event gets a
// clear, non-retriable 400 and that the function keeps serving.
func TestInvalidFixturesAreRejected(t *testing.T) {
	url := hosttest.Server(t, newFunction(t, &counciltest.Completer{}, nil).Handle).URL
	for _, tc := range eventstest.Cases(t, "proposal.requested.v1/invalid") {
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
	good := eventstest.Load(t, "proposal.requested.v1/valid/stage0.json")
	if resp := hosttest.Post(t, url, good); resp.Status != http.StatusOK {
		t.Fatalf("valid event after invalid ones: status %d (%s)", resp.Status, resp.Error)
	}
}

func TestLLMFailuresAreRepliedAsProposalFailed(t *testing.T) {
	cases := []struct {
		name      string
		err       error
		content   string
		retryable bool
		says      string
	}{
		{name: "server unavailable", err: council.Unavailablef("status 503"), retryable: true, says: "status 503"},
		{name: "request rejected", err: council.Invalidf("status 400: context too long"), retryable: false, says: "context too long"},
		{name: "empty completion", content: "  ", retryable: true, says: "empty completion"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			llm := &counciltest.Completer{CompleteFunc: func(context.Context, council.CompletionRequest) (council.Completion, error) {
				return council.Completion{Content: tc.content}, tc.err
			}}
			reply, err := newFunction(t, llm, nil).Handle(context.Background(), eventstest.Load(t, "proposal.requested.v1/valid/stage0.json"))
			if err != nil {
				t.Fatalf("Handle: %v", err)
			}
			w, err := events.DecodeWorkFailure(*reply)
			if err != nil {
				t.Fatalf("reply is not proposal.failed: %v", err)
			}
			if w.Retryable != tc.retryable || !strings.Contains(w.Error, tc.says) {
				t.Errorf("failure %+v, want retryable=%v and an error saying %q", w, tc.retryable, tc.says)
			}
		})
	}
}

func TestCancelledContextIsTransient(t *testing.T) {
	llm := &counciltest.Completer{CompleteFunc: func(ctx context.Context, _ council.CompletionRequest) (council.Completion, error) {
		<-ctx.Done()
		return council.Completion{}, council.Unavailablef("%v", ctx.Err())
	}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := newFunction(t, llm, nil).Handle(ctx, eventstest.Load(t, "proposal.requested.v1/valid/stage0.json"))
	if !errors.Is(err, council.ErrUnavailable) {
		t.Fatalf("err %v, want ErrUnavailable so the event is delivered again", err)
	}
}

func TestTokensAreStreamedPerAgent(t *testing.T) {
	sink := &counciltest.TokenSink{}
	e := eventstest.Load(t, "proposal.requested.v1/valid/stage0.json")
	req, err := events.DecodeProposalRequested(e)
	if err != nil {
		t.Fatal(err)
	}
	reply, err := newFunction(t, &counciltest.Completer{}, sink).Handle(context.Background(), e)
	if err != nil {
		t.Fatal(err)
	}
	_, _, p, err := events.DecodeProposalGenerated(*reply)
	if err != nil {
		t.Fatal(err)
	}
	if !p.StartedAt.Equal(t0) {
		t.Errorf("started_at = %v, want the clock's time before the call (%v)", p.StartedAt, t0)
	}
	chunks := sink.Chunks()
	if len(chunks) < 2 || !chunks[len(chunks)-1].Final {
		t.Fatalf("chunks %+v, want text chunks then a final one", chunks)
	}
	var text strings.Builder
	for i, c := range chunks {
		if c.DeliberationID != req.DeliberationID || c.AgentID != req.Agent.ID || c.Seq != i+1 {
			t.Errorf("chunk %d = %+v", i, c)
		}
		text.WriteString(c.Text)
	}
	if diff := cmp.Diff(p.Content, text.String()); diff != "" {
		t.Errorf("streamed text differs from the proposal (-want +got):\n%s", diff)
	}
}

// TestNewRejectsBadOptions: an option that would misconfigure the function
// is an error of New.
func TestNewRejectsBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  generate.Option
		want string
	}{
		{"empty source", generate.WithSource(""), "empty source"},
		{"nil clock", generate.WithClock(nil), "nil clock"},
		{"nil logger", generate.WithLogger(nil), "nil logger"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := generate.New(&counciltest.Completer{}, tc.opt)
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

// TestForgedIDsNeverReachTheLLM sends proposal.requested events whose ids
// would turn into NATS wildcards or separators (the deliberation id "a.*.>"
// of the fault runs): each is refused with a non-retriable 400 before any
// LLM call or token subject.
func TestForgedIDsNeverReachTheLLM(t *testing.T) {
	llm := &counciltest.Completer{}
	sink := &counciltest.TokenSink{}
	f := newFunction(t, llm, sink)
	url := hosttest.Server(t, f.Handle).URL
	good := eventstest.Load(t, "proposal.requested.v1/valid/stage0.json")
	for _, tc := range []struct{ field, value, expect string }{
		{"deliberation_id", "a.*.>", `deliberation id "a.*.>"`},
		{"deliberation_id", ">", `deliberation id ">"`},
		{"deliberation_id", "dlb 1", `deliberation id "dlb 1"`},
		{"key", "p.0.*", `work key "p.0.*"`},
		{"key", "p..dev-1", `work key "p..dev-1"`},
	} {
		t.Run(tc.field+"="+tc.value, func(t *testing.T) {
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
	if n := len(sink.Chunks()); n != 0 {
		t.Errorf("%d tokens streamed for forged requests, want 0", n)
	}
}
