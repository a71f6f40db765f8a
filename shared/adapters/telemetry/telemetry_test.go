package telemetry_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"council.dev/events"
	"council.dev/shared/adapters/telemetry"
	"council.dev/shared/adapters/vllm"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// traced returns a Telemetry that records its spans in memory.
func traced(t testing.TB, function string) (*telemetry.Telemetry, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tel, err := telemetry.New(context.Background(), function, telemetry.Config{}, telemetry.WithSpanExporter(exp), telemetry.WithSyncExport())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel, exp
}

func proposalRequested(t testing.TB) event.Event {
	t.Helper()
	env := events.NewProposalRequested("council.dev/execute", council.ProposalRequest{
		DeliberationID: "d1", Key: council.ProposalKey(0, "a1"), Attempt: 1,
		Task:  council.Task{ID: "task-1", Kind: council.KindDeliberation, Description: "Say hi.", Agents: []council.Agent{{ID: "a1", Role: "critic"}}},
		Agent: council.Agent{ID: "a1", Role: "critic"},
	}, time.Now())
	ev, err := events.CheckedEvent(env)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func attrs(s sdktrace.ReadOnlySpan) map[string]string {
	m := map[string]string{}
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value.String()
	}
	return m
}

// TestTraceFollowsTheEvents: a handler continues the trace of its event's
// distributed-tracing extension, its LLM call is a child span with the
// GenAI attributes and the agent of the event, and its reply and the
// events it emits carry its trace on.
func TestTraceFollowsTheEvents(t *testing.T) {
	tel, exp := traced(t, "generate")
	llm := tel.Completer(&counciltest.Completer{CompleteFunc: func(context.Context, council.CompletionRequest) (council.Completion, error) {
		return council.Completion{Content: "hi", Model: "tiny-2", FinishReason: "stop",
			Usage: council.Usage{PromptTokens: 12, CompletionTokens: 3, CachedTokens: 8}}, nil
	}}, "tiny")
	sent := &counciltest.Emitter{}
	emit := tel.Emitter(sent)
	h := tel.Handler(func(ctx context.Context, ev event.Event) (*event.Event, error) {
		if _, err := llm.Complete(ctx, council.CompletionRequest{Messages: []council.Message{{Role: "user", Content: "hi"}}, MaxTokens: 16}); err != nil {
			return nil, err
		}
		if err := emit.Emit(ctx, council.Envelope{ID: "x", Type: events.TypeProposalGenerated, Source: "s", Data: []byte(`{}`)}); err != nil {
			return nil, err
		}
		reply := event.New()
		reply.SetID("r")
		reply.SetType(events.TypeProposalGenerated)
		reply.SetSource("s")
		return &reply, nil
	})

	// The sender's span, carried in the event.
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6}, TraceFlags: trace.FlagsSampled, Remote: true,
	})
	ev := proposalRequested(t)
	ev.SetExtension("traceparent", fmt.Sprintf("00-%s-%s-01", parent.TraceID(), parent.SpanID()))
	reply, err := h(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}

	spans := exp.GetSpans().Snapshots()
	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byName[s.Name()] = s
		if s.SpanContext().TraceID() != parent.TraceID() {
			t.Errorf("span %s in trace %s, want the event's %s", s.Name(), s.SpanContext().TraceID(), parent.TraceID())
		}
	}
	process, chat, send := byName["process proposal.requested"], byName["chat tiny"], byName["send proposal.generated"]
	if process == nil || chat == nil || send == nil {
		t.Fatalf("spans %v: want process proposal.requested, chat tiny, send proposal.generated", names(spans))
	}
	if process.Parent().SpanID() != parent.SpanID() || chat.Parent().SpanID() != process.SpanContext().SpanID() {
		t.Errorf("parents: process ← %s (want the sender's %s), chat ← %s (want process)", process.Parent().SpanID(), parent.SpanID(), chat.Parent().SpanID())
	}
	want := map[string]string{
		"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
		"gen_ai.request.model": "tiny", "gen_ai.response.model": "tiny-2", "gen_ai.request.max_tokens": "16",
		"gen_ai.usage.input_tokens": "12", "gen_ai.usage.output_tokens": "3", "gen_ai.usage.cache_read.input_tokens": "8",
		"gen_ai.agent.id": "a1", "gen_ai.agent.name": "critic", "gen_ai.response.finish_reasons": `["stop"]`,
	}
	got := attrs(chat)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("chat span: %s = %q, want %q", k, got[k], v)
		}
	}
	if a := attrs(process); a["council.deliberation.id"] != "d1" || a["council.work.key"] != "p.0.a1" || a["council.outcome"] != "replied" {
		t.Errorf("process span attributes %v", a)
	}
	// The reply and the emitted event continue the trace.
	if tp, _ := reply.Extensions()["traceparent"].(string); !strings.Contains(tp, parent.TraceID().String()) ||
		!strings.Contains(tp, process.SpanContext().SpanID().String()) {
		t.Errorf("reply traceparent %q: want trace %s, parent span %s", tp, parent.TraceID(), process.SpanContext().SpanID())
	}
	if e := sent.Sent(); len(e) != 1 || !strings.Contains(e[0].TraceParent, send.SpanContext().SpanID().String()) {
		t.Errorf("emitted %+v: want the traceparent of the send span %s", e, send.SpanContext().SpanID())
	}
	// On the wire: the CloudEvents extension.
	wire, err := events.CheckedEvent(sent.Sent()[0])
	if err != nil {
		t.Fatal(err)
	}
	if wire.Extensions()["traceparent"] != sent.Sent()[0].TraceParent {
		t.Errorf("event extensions %v: want traceparent %s", wire.Extensions(), sent.Sent()[0].TraceParent)
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var n []string
	for _, s := range spans {
		n = append(n, s.Name())
	}
	return n
}

// TestNoTraceContext: an event without one starts a trace; a malformed one
// is ignored, never an error.
func TestNoTraceContext(t *testing.T) {
	tel, exp := traced(t, "critique")
	h := tel.Handler(func(context.Context, event.Event) (*event.Event, error) { return nil, nil })
	for _, tp := range []string{"", "garbage", "00-zz-yy-01"} {
		ev := proposalRequested(t)
		if tp != "" {
			ev.SetExtension("traceparent", tp)
		}
		if _, err := h(context.Background(), ev); err != nil {
			t.Errorf("traceparent %q: %v", tp, err)
		}
	}
	for _, s := range exp.GetSpans().Snapshots() {
		if s.Parent().IsValid() {
			t.Errorf("span %s has parent %s: want a new trace", s.Name(), s.Parent().SpanID())
		}
	}
}

// TestOffPassesTheContextOn: with tracing off, an incoming trace context
// goes on unchanged in the reply, and a nil Telemetry wraps nothing.
func TestOffPassesTheContextOn(t *testing.T) {
	tel, err := telemetry.New(context.Background(), "generate", telemetry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if tel.Tracing() {
		t.Fatal("tracing on without an endpoint")
	}
	h := tel.Handler(func(context.Context, event.Event) (*event.Event, error) {
		r := event.New()
		return &r, nil
	})
	ev := proposalRequested(t)
	const tp = "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01"
	ev.SetExtension("traceparent", tp)
	reply, err := h(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if got := reply.Extensions()["traceparent"]; got != tp {
		t.Errorf("reply traceparent %v, want %s", got, tp)
	}
	var none *telemetry.Telemetry
	c := &counciltest.Completer{}
	if none.Completer(c, "m") != council.Completer(c) || none.Handler(nil) != nil {
		t.Error("a nil Telemetry wrapped something")
	}
}

// TestRetriesAreSpanEvents: the HTTP attempts of one LLM call after the
// first are span events and counted.
func TestRetriesAreSpanEvents(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if n.Add(1) < 3 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"1","object":"chat.completion","model":"tiny","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}`))
	}))
	defer srv.Close()
	client, err := vllm.New(srv.URL+"/v1", "tiny", vllm.WithRetries(3), vllm.WithBackoff(time.Millisecond, time.Millisecond),
		vllm.WithMaxConns(4), vllm.WithTransportWrap(telemetry.Transport))
	if err != nil {
		t.Fatal(err)
	}
	tel, exp := traced(t, "generate")
	if _, err := tel.Completer(client, "tiny").Complete(context.Background(), council.CompletionRequest{
		Messages: []council.Message{{Role: "user", Content: "hi"}},
	}); err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans().Snapshots()
	if len(spans) != 1 {
		t.Fatalf("spans %v, want one chat span", names(spans))
	}
	var got []string
	for _, e := range spans[0].Events() {
		got = append(got, e.Name+attrString(e.Attributes))
	}
	want := []string{
		"gen_ai.attempt.failed{council.llm.attempt=1,http.response.status_code=503}",
		"gen_ai.retry{council.llm.attempt=2}",
		"gen_ai.attempt.failed{council.llm.attempt=2,http.response.status_code=503}",
		"gen_ai.retry{council.llm.attempt=3}",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("span events (-want +got):\n%s", d)
	}
	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `council_llm_retries_total{function="generate",model="tiny"} 2`) {
		t.Errorf("/metrics without 2 retries:\n%s", rec.Body.String())
	}
}

func attrString(kvs []attribute.KeyValue) string {
	var parts []string
	for _, kv := range kvs {
		parts = append(parts, string(kv.Key)+"="+kv.Value.String())
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// TestConfig: where each signal goes.
func TestConfig(t *testing.T) {
	for _, c := range []struct {
		cfg             telemetry.Config
		traces, metrics string
	}{
		{telemetry.Config{}, "", ""},
		{telemetry.Config{Endpoint: "http://c:4318/"}, "http://c:4318/v1/traces", "http://c:4318/v1/metrics"},
		{telemetry.Config{Endpoint: "http://c:4318", MetricsExporter: "none"}, "http://c:4318/v1/traces", ""},
		{telemetry.Config{Endpoint: "http://c:4318", Disabled: true}, "", ""},
		{telemetry.Config{TracesExporter: "otlp"}, "http://localhost:4318/v1/traces", ""},
		{telemetry.Config{Endpoint: "http://c:4318", TracesEndpoint: "http://t:1/x"}, "http://t:1/x", "http://c:4318/v1/metrics"},
	} {
		if got := c.cfg.TracesURL(); got != c.traces {
			t.Errorf("%+v: traces to %q, want %q", c.cfg, got, c.traces)
		}
		if got := c.cfg.MetricsURL(); got != c.metrics {
			t.Errorf("%+v: metrics to %q, want %q", c.cfg, got, c.metrics)
		}
	}
	if _, err := telemetry.New(context.Background(), "x", telemetry.Config{TracesExporter: "zipkin"}); err == nil {
		t.Error("exporter zipkin accepted")
	}
}
