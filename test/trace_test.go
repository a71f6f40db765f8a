package test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"council.dev/cli/jaeger"
	"council.dev/cli/stack"
	"council.dev/events"
	"council.dev/shared/adapters/telemetry"
	"council.dev/shared/adapters/vllm/vllmtest"
	"council.dev/shared/counciltest"
)

// startJaeger starts the Jaeger that scripts/jaeger.sh installed (make test
// does); without it the test fails, it never skips.
func startJaeger(t *testing.T) *jaeger.Jaeger {
	t.Helper()
	bin, err := jaeger.Binary(".")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	j, err := jaeger.Start(ctx, bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(j.Stop)
	return j
}

// TestDeliberationIsTracedAndCounted runs a 3-agent, 1-round deliberation
// on the real LLM server and NATS with tracing on (OTLP to a real Jaeger),
// then reads the whole trace back from Jaeger's query API — one trace: the
// request, every proposal and critique with its LLM call and the GenAI
// attributes, the completion — and scrapes each function's /metrics, whose
// counters must match the events the broker holds.
func TestDeliberationIsTracedAndCounted(t *testing.T) {
	j := startJaeger(t)
	ctx := context.Background()
	s, err := stack.Start(ctx, stack.Config{
		LLMURL: vllmtest.URL(t), LLMModel: vllmtest.Model(), StoreDir: t.TempDir(),
		LLMTimeout: 2 * time.Minute, SweepEvery: time.Second,
		Env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": j.OTLPURL, "OTEL_METRICS_EXPORTER": "none"},
	})
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(s.Close)

	// The Orchestrator's side: a span of its own, whose context the request
	// carries in its distributed-tracing extension.
	client, err := telemetry.New(ctx, "test", telemetry.Config{ServiceName: "orchestrator", Endpoint: j.OTLPURL, MetricsExporter: telemetry.ExporterNone})
	if err != nil {
		t.Fatal(err)
	}
	rctx, root := client.Tracer().Start(ctx, "deliberate")
	e := request(t, 32)
	telemetry.Inject(rctx, &e)
	traceID := root.SpanContext().TraceID().String()
	id := send(t, s, e)
	c := await(t, s, id)
	root.End()
	checkCompleted(t, c, "task-42")
	if err := client.Shutdown(ctx); err != nil {
		t.Fatalf("export the orchestrator's span: %v", err)
	}
	counts := countEvents(t, s, id)
	t.Logf("trace %s: %s; broker: %v", traceID, j.TraceURL(traceID), counts)

	// The ends are counted when the outbox sends them, just after the event.
	if !counciltest.Within(10*time.Second, 50*time.Millisecond, func() bool {
		return sum(scrape(t, s, "execute")["council_deliberations_ended_total"], map[string]string{"outcome": "completed"}) == 1
	}) {
		t.Errorf("execute: council_deliberations_ended_total{outcome=completed} never reached 1")
	}
	if err := s.FlushTelemetry(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}

	t.Run("trace", func(t *testing.T) {
		want := map[string]int{
			"process deliberation.requested": 1,
			"process proposal.requested":     counts[events.TypeProposalRequested],
			"process critique.requested":     counts[events.TypeCritiqueRequested],
			"process proposal.generated":     counts[events.TypeProposalGenerated],
			"process critique.completed":     counts[events.TypeCritiqueCompleted],
			"send deliberation.completed":    1,
		}
		calls := counts[events.TypeProposalGenerated] + counts[events.TypeCritiqueCompleted]
		var spans []jaeger.Span
		var got map[string]int
		var chats int
		// Spans arrive in batches from four exporters: wait for them all.
		complete := counciltest.Within(30*time.Second, 250*time.Millisecond, func() bool {
			spans, err = j.Trace(ctx, traceID)
			if err != nil {
				return false
			}
			got, chats = map[string]int{}, 0
			for _, sp := range spans {
				got[sp.OperationName]++
				if strings.HasPrefix(sp.OperationName, "chat ") {
					chats++
				}
			}
			for op, n := range want {
				if got[op] < n {
					return false
				}
			}
			return chats >= calls
		})
		if !complete {
			t.Fatalf("trace %s: %d spans %v, %d LLM calls; want at least %v and %d LLM calls (err %v)\njaeger log: %s",
				traceID, len(spans), got, chats, want, calls, err, j.Log())
		}
		t.Logf("trace %s: %d spans, %d LLM calls: %v", traceID, len(spans), chats, got)
		for op, n := range want {
			if got[op] != n {
				t.Errorf("trace: %d %q spans, want %d (the broker's events of the deliberation)", got[op], op, n)
			}
		}
		if got["deliberate"] != 1 {
			t.Errorf("trace: %d spans of the orchestrator's request, want 1", got["deliberate"])
		}
		services := map[string]bool{}
		byID := map[string]jaeger.Span{}
		for _, sp := range spans {
			services[sp.Service] = true
			byID[sp.SpanID] = sp
		}
		for _, svc := range []string{"orchestrator", "council-execute", "council-generate", "council-critique"} {
			if !services[svc] {
				t.Errorf("trace: no span of %s (services: %v)", svc, services)
			}
		}
		// One tree: every span but the root has its parent in the trace.
		for _, sp := range spans {
			if sp.OperationName == "deliberate" {
				continue
			}
			if len(sp.References) == 0 || byID[sp.References[0].SpanID].SpanID == "" {
				t.Errorf("span %q (%s) has no parent in the trace: %+v", sp.OperationName, sp.Service, sp.References)
			}
		}
		// Every LLM call with the GenAI attributes, under its handler.
		var agents = map[string]bool{}
		for _, sp := range spans {
			if !strings.HasPrefix(sp.OperationName, "chat ") {
				continue
			}
			for key, wantV := range map[string]string{
				"gen_ai.operation.name": "chat",
				"gen_ai.request.model":  vllmtest.Model(),
				"gen_ai.provider.name":  "openai",
			} {
				if v, _ := sp.Tag(key); v != wantV {
					t.Errorf("span %s: %s = %q, want %q", sp.OperationName, key, v, wantV)
				}
			}
			for _, key := range []string{"gen_ai.response.model", "gen_ai.agent.id", "gen_ai.agent.name", "gen_ai.usage.cache_read.input_tokens"} {
				if v, ok := sp.Tag(key); !ok || v == "" {
					t.Errorf("span %s: no %s", sp.OperationName, key)
				}
			}
			for _, key := range []string{"gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"} {
				if v, _ := sp.Tag(key); atoi(v) <= 0 {
					t.Errorf("span %s: %s = %q, want > 0", sp.OperationName, key, v)
				}
			}
			a, _ := sp.Tag("gen_ai.agent.id")
			agents[a] = true
			if parent := byID[sp.References[0].SpanID]; !strings.HasPrefix(parent.OperationName, "process ") {
				t.Errorf("span %s: parent %q, want the handler's span", sp.OperationName, parent.OperationName)
			}
		}
		if len(agents) != 3 {
			t.Errorf("LLM calls of %d agents %v, want 3", len(agents), agents)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		handled := func(fn, typ string) int {
			m := scrape(t, s, fn)["council_events_handled_total"]
			return sum(m, map[string]string{"type": typ, "outcome": "ok"}) + sum(m, map[string]string{"type": typ, "outcome": "replied"})
		}
		for _, c := range []struct {
			fn, short, typ string
		}{
			{"execute", "deliberation.requested", events.TypeDeliberationRequested},
			{"generate", "proposal.requested", events.TypeProposalRequested},
			{"critique", "critique.requested", events.TypeCritiqueRequested},
			{"execute", "proposal.generated", events.TypeProposalGenerated},
			{"execute", "critique.completed", events.TypeCritiqueCompleted},
		} {
			want := counts[c.typ]
			if c.typ == events.TypeDeliberationRequested {
				want = 1
			}
			if got := handled(c.fn, c.short); got != want || want == 0 {
				t.Errorf("%s: council_events_handled_total{type=%q} = %d, want %d (the broker's events)", c.fn, c.short, got, want)
			}
		}
		// Tokens and calls: the metrics count what the LLM calls reported.
		var calls, prompt int
		for _, fn := range []string{"generate", "critique"} {
			m := scrape(t, s, fn)
			calls += sum(m["council_llm_calls_total"], map[string]string{"outcome": "ok"})
			prompt += sum(m["council_llm_tokens_total"], map[string]string{"type": "prompt"})
			if n := count(m["gen_ai_client_operation_duration_seconds"]); n == 0 {
				t.Errorf("%s: no LLM call latency observed", fn)
			}
			if _, ok := m["council_queue_pending"]; !ok {
				t.Errorf("%s: no council_queue_pending", fn)
			}
		}
		if want := counts[events.TypeProposalGenerated] + counts[events.TypeCritiqueCompleted]; calls != want {
			t.Errorf("council_llm_calls_total{outcome=ok} = %d, want %d (one per proposal and critique)", calls, want)
		}
		if prompt != c.Usage.PromptTokens {
			t.Errorf("council_llm_tokens_total{type=prompt} = %d, want %d (the deliberation's usage)", prompt, c.Usage.PromptTokens)
		}
		if n := count(scrape(t, s, "execute")["council_deliberation_duration_seconds"]); n != 1 {
			t.Errorf("council_deliberation_duration_seconds: %d observations, want 1", n)
		}
	})
}

// scrape GETs /metrics of function over HTTP and parses it with the
// Prometheus text parser.
func scrape(t *testing.T, s *stack.Stack, function string) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(s.Telemetry(function).MetricsHandler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s /metrics: %s", function, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("%s /metrics does not parse: %v", function, err)
	}
	return mf
}

// sum adds the values of the counter samples of f whose labels include
// match.
func sum(f *dto.MetricFamily, match map[string]string) int {
	if f == nil {
		return 0
	}
	var n float64
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range match {
			if labels[k] != v {
				continue next
			}
		}
		n += m.GetCounter().GetValue()
	}
	return int(n)
}

// count adds the observation counts of histogram family f.
func count(f *dto.MetricFamily) int {
	if f == nil {
		return 0
	}
	var n uint64
	for _, m := range f.GetMetric() {
		n += m.GetHistogram().GetSampleCount()
	}
	return int(n)
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}
