package telemetry_test

import (
	"context"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"council.dev/events"
	"council.dev/shared/adapters/telemetry"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// BenchmarkEventOverhead is the cost telemetry adds to one event: a
// proposal.requested handled by a handler that makes one (instant) LLM
// call and emits one event, as generate does. bare: no telemetry; off:
// metrics only, the no-op tracer (no OTLP endpoint, the default); on:
// every span recorded and batched to an exporter that drops them (the
// cost in this process of tracing to a collector). docs/benchmarks.md.
func BenchmarkEventOverhead(b *testing.B) {
	off, err := telemetry.New(context.Background(), "generate", telemetry.Config{})
	if err != nil {
		b.Fatal(err)
	}
	on, err := telemetry.New(context.Background(), "generate", telemetry.Config{}, telemetry.WithSpanExporter(tracetest.NewNoopExporter()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = off.Shutdown(context.Background())
		_ = on.Shutdown(context.Background())
	})
	answer := council.Completion{Content: "hi", Model: "tiny", Usage: council.Usage{PromptTokens: 100, CompletionTokens: 20, CachedTokens: 80}}
	ev := proposalRequested(b)
	ev.SetExtension("traceparent", "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01")
	for _, c := range []struct {
		name string
		tel  *telemetry.Telemetry
	}{{"bare", nil}, {"off", off}, {"on", on}} {
		b.Run(c.name, func(b *testing.B) {
			llm := c.tel.Completer(&counciltest.Completer{CompleteFunc: func(context.Context, council.CompletionRequest) (council.Completion, error) {
				return answer, nil
			}}, "tiny")
			emit := c.tel.Emitter(&counciltest.Emitter{EmitFunc: func(context.Context, council.Envelope) error { return nil }})
			env := council.Envelope{ID: "d1.p.0.a1.1.generated", Type: events.TypeProposalGenerated, Source: "s", Data: []byte(`{}`)}
			req := council.CompletionRequest{Messages: []council.Message{{Role: "user", Content: "hi"}}}
			h := c.tel.Handler(func(ctx context.Context, _ event.Event) (*event.Event, error) {
				if _, err := llm.Complete(ctx, req); err != nil {
					return nil, err
				}
				return nil, emit.Emit(ctx, env)
			})
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := h(ctx, ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
