package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.opentelemetry.io/otel/trace"

	"council.dev/cli/jaeger"
	"council.dev/cli/stack"
	"council.dev/shared/adapters/telemetry"
)

// devTrace is `council dev -trace`: a local Jaeger, the functions' spans
// exported to it, and a span of the dev command itself that the request
// continues, so that the whole deliberation is one trace. A nil *devTrace
// does nothing.
type devTrace struct {
	j      *jaeger.Jaeger
	client *telemetry.Telemetry
	span   trace.Span
}

func startTrace(ctx context.Context, dir string, stdout io.Writer) (*devTrace, error) {
	bin, err := jaeger.Binary(".")
	if err != nil {
		return nil, err
	}
	j, err := jaeger.Start(ctx, bin, dir)
	if err != nil {
		return nil, err
	}
	client, err := telemetry.New(ctx, "cli", telemetry.Config{ServiceName: "council-dev", Endpoint: j.OTLPURL, MetricsExporter: telemetry.ExporterNone})
	if err != nil {
		j.Stop()
		return nil, err
	}
	fmt.Fprintf(stdout, "council dev: tracing to Jaeger %s (UI %s)\n", j.OTLPURL, j.QueryURL)
	return &devTrace{j: j, client: client}, nil
}

// env is what turns the stack's tracing on.
func (t *devTrace) env() map[string]string {
	if t == nil {
		return nil
	}
	return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": t.j.OTLPURL, "OTEL_METRICS_EXPORTER": telemetry.ExporterNone}
}

// begin starts the trace of the request ev, which then carries its
// context (the CloudEvents distributed-tracing extension).
func (t *devTrace) begin(ctx context.Context, ev *event.Event) context.Context {
	if t == nil {
		return ctx
	}
	ctx, t.span = t.client.Tracer().Start(ctx, "council dev "+ev.Subject(), trace.WithSpanKind(trace.SpanKindProducer))
	telemetry.Inject(ctx, ev)
	return ctx
}

// end closes the trace, flushes every function's spans and prints where
// the trace is.
func (t *devTrace) end(ctx context.Context, s *stack.Stack, stdout io.Writer) {
	if t == nil || t.span == nil {
		return
	}
	t.span.End()
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = t.client.ForceFlush(fctx)
	if err := s.FlushTelemetry(fctx); err != nil {
		fmt.Fprintf(stdout, "council dev: flushing spans: %v\n", err)
	}
	fmt.Fprintf(stdout, "trace: %s\n", t.j.TraceURL(t.span.SpanContext().TraceID().String()))
}

// wait keeps Jaeger up, for the trace to be looked at, until ctx ends.
func (t *devTrace) wait(ctx context.Context, stdout io.Writer) {
	if t == nil {
		return
	}
	fmt.Fprintln(stdout, "council dev: Jaeger keeps the trace until you interrupt (Ctrl-C)")
	<-ctx.Done()
}

func (t *devTrace) stop() {
	if t == nil {
		return
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = t.client.Shutdown(sctx)
	t.j.Stop()
}
