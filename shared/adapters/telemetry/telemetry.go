package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// scope is the instrumentation scope of council's spans and metrics.
const scope = "council.dev/shared/adapters/telemetry"

// Telemetry is one function's tracer and meters. Create it with New and
// stop it with Shutdown, which flushes what is buffered. A nil *Telemetry
// is valid: its decorators return what they are given, unchanged.
type Telemetry struct {
	function string
	tracer   trace.Tracer
	tp       *sdktrace.TracerProvider // nil: tracing off
	mp       *sdkmetric.MeterProvider
	registry *prometheus.Registry
	fnAttr   attribute.KeyValue
	m        instruments
	now      func() time.Time
	// sets caches the attribute sets of the measurements by their label
	// values: building a set sorts and allocates, on every event.
	setsMu sync.RWMutex
	sets   map[string]metric.MeasurementOption
}

// set returns the measurement option of t's function and the label pairs
// kv (name, value, name, value…), built once.
func (t *Telemetry) set(kv ...string) metric.MeasurementOption {
	var buf [256]byte
	key := buf[:0]
	for _, s := range kv {
		key = append(append(key, s...), 0)
	}
	t.setsMu.RLock()
	o, ok := t.sets[string(key)]
	t.setsMu.RUnlock()
	if ok {
		return o
	}
	attrs := []attribute.KeyValue{t.fnAttr}
	for i := 0; i+1 < len(kv); i += 2 {
		attrs = append(attrs, attribute.String(kv[i], kv[i+1]))
	}
	o = metric.WithAttributeSet(attribute.NewSet(attrs...))
	t.setsMu.Lock()
	t.sets[string(key)] = o
	t.setsMu.Unlock()
	return o
}

type instruments struct {
	handled      metric.Int64Counter
	handlerDur   metric.Float64Histogram
	llmDur       metric.Float64Histogram
	llmCalls     metric.Int64Counter
	tokens       metric.Int64Counter
	retries      metric.Int64Counter
	duplicates   metric.Int64Counter
	ended        metric.Int64Counter
	deliberation metric.Float64Histogram
	pending      metric.Int64Gauge
}

// Option configures New.
type Option func(*options)

type options struct {
	traceExporter sdktrace.SpanExporter
	syncExport    bool
}

// WithSpanExporter exports spans to e instead of the OTLP exporter of
// Config (tests, benchmarks); tracing is then on whatever Config says.
func WithSpanExporter(e sdktrace.SpanExporter) Option {
	return func(o *options) { o.traceExporter = e }
}

// WithSyncExport exports each span as it ends instead of in batches
// (tests that read spans back at once).
func WithSyncExport() Option { return func(o *options) { o.syncExport = true } }

// Histogram buckets, in seconds: event handlers and LLM calls take from a
// millisecond (a duplicate) to minutes (a long completion).
var secondsBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// New returns the telemetry of function (execute, generate, critique…)
// as cfg describes it. Nothing is sent anywhere until a span ends or a
// metric export is due; an OTLP endpoint that does not answer costs
// dropped spans and a logged error of the SDK, never a failed event.
func New(ctx context.Context, function string, cfg Config, opts ...Option) (*Telemetry, error) {
	if function == "" {
		return nil, errors.New("telemetry: a function name is required")
	}
	if err := cfg.Check(); err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	name := cfg.ServiceName
	if name == "" {
		name = "council-" + function
	}
	attrs := []attribute.KeyValue{semconv.ServiceName(name), attribute.String("council.function", function)}
	for k, v := range cfg.ResourceAttributes {
		if k != string(semconv.ServiceNameKey) {
			attrs = append(attrs, attribute.String(k, v))
		}
	}
	res := resource.NewWithAttributes(semconv.SchemaURL, attrs...)

	t := &Telemetry{function: function, fnAttr: attribute.String("function", function), now: time.Now,
		sets: map[string]metric.MeasurementOption{}}
	exp := o.traceExporter
	if exp == nil && cfg.TracesURL() != "" {
		var err error
		if exp, err = otlptracehttp.New(ctx, otlpTraceOptions(cfg.TracesURL(), cfg.Headers)...); err != nil {
			return nil, fmt.Errorf("telemetry: otlp trace exporter: %w", err)
		}
	}
	if exp != nil {
		ratio := cfg.SampleRatio
		if ratio == 0 {
			ratio = 1
		}
		sp := sdktrace.WithBatcher(exp)
		if o.syncExport {
			sp = sdktrace.WithSyncer(exp)
		}
		t.tp = sdktrace.NewTracerProvider(sp, sdktrace.WithResource(res),
			sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))))
		t.tracer = t.tp.Tracer(scope)
	} else {
		t.tracer = noop.NewTracerProvider().Tracer(scope)
	}

	t.registry = prometheus.NewRegistry()
	pe, err := otelprom.New(otelprom.WithRegisterer(t.registry), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	mopts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(pe)}
	if u := cfg.MetricsURL(); u != "" {
		me, err := otlpmetrichttp.New(ctx, otlpMetricOptions(u, cfg.Headers)...)
		if err != nil {
			return nil, fmt.Errorf("telemetry: otlp metric exporter: %w", err)
		}
		var ropts []sdkmetric.PeriodicReaderOption
		if cfg.MetricInterval > 0 {
			ropts = append(ropts, sdkmetric.WithInterval(cfg.MetricInterval))
		}
		mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(me, ropts...)))
	}
	t.mp = sdkmetric.NewMeterProvider(mopts...)
	if err := t.instruments(t.mp.Meter(scope)); err != nil {
		return nil, fmt.Errorf("telemetry: instruments: %w", err)
	}
	return t, nil
}

func (t *Telemetry) instruments(m metric.Meter) error {
	var errs [10]error
	b := metric.WithExplicitBucketBoundaries(secondsBuckets...)
	t.m.handled, errs[0] = m.Int64Counter("council.events.handled",
		metric.WithDescription("Events handled, by type and outcome (ok, replied, retry, rejected)."), metric.WithUnit("{event}"))
	t.m.handlerDur, errs[1] = m.Float64Histogram("council.event.duration",
		metric.WithDescription("Time to handle one event."), metric.WithUnit("s"), b)
	t.m.llmDur, errs[2] = m.Float64Histogram("gen_ai.client.operation.duration",
		metric.WithDescription("GenAI operation duration: one LLM call, its retries included."), metric.WithUnit("s"), b)
	t.m.llmCalls, errs[3] = m.Int64Counter("council.llm.calls",
		metric.WithDescription("LLM calls, by model and outcome (ok, error)."), metric.WithUnit("{call}"))
	t.m.tokens, errs[4] = m.Int64Counter("council.llm.tokens",
		metric.WithDescription("Tokens the LLM server reported, by type (prompt, completion, cached: prompt tokens from its prefix cache)."), metric.WithUnit("{token}"))
	t.m.retries, errs[5] = m.Int64Counter("council.llm.retries",
		metric.WithDescription("LLM attempts after the first of a call."), metric.WithUnit("{retry}"))
	t.m.duplicates, errs[6] = m.Int64Counter("council.duplicates.dropped",
		metric.WithDescription("Events the broker dropped as duplicates of ones it holds (Nats-Msg-Id)."), metric.WithUnit("{event}"))
	t.m.ended, errs[7] = m.Int64Counter("council.deliberations.ended",
		metric.WithDescription("Deliberations ended, by outcome."), metric.WithUnit("{deliberation}"))
	t.m.deliberation, errs[8] = m.Float64Histogram("council.deliberation.duration",
		metric.WithDescription("Time from a deliberation's start to its end."), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600))
	t.m.pending, errs[9] = m.Int64Gauge("council.queue.pending",
		metric.WithDescription("Messages waiting behind the last one a JetStream consumer received (NumPending): its queue lag."), metric.WithUnit("{message}"))
	return errors.Join(errs[:]...)
}

// otlpTraceOptions points the exporter at the full URL u.
func otlpTraceOptions(u string, headers map[string]string) []otlptracehttp.Option {
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(u)}
	if len(headers) > 0 {
		opts = append(opts, otlptracehttp.WithHeaders(headers))
	}
	return opts
}

func otlpMetricOptions(u string, headers map[string]string) []otlpmetrichttp.Option {
	opts := []otlpmetrichttp.Option{otlpmetrichttp.WithEndpointURL(u)}
	if len(headers) > 0 {
		opts = append(opts, otlpmetrichttp.WithHeaders(headers))
	}
	return opts
}

// start starts a span of kind, or, with tracing off, returns the span of
// ctx (a remote or no-op one, which records nothing): off, a span costs
// no allocation.
func (t *Telemetry) start(ctx context.Context, name string, kind trace.SpanKind) (context.Context, trace.Span) {
	if t.tp == nil {
		return ctx, trace.SpanFromContext(ctx)
	}
	return t.tracer.Start(ctx, name, trace.WithSpanKind(kind))
}

// Tracing reports whether spans are recorded and exported.
func (t *Telemetry) Tracing() bool { return t != nil && t.tp != nil }

// Tracer returns the tracer of t's spans (a no-op one when tracing is off
// or t is nil), for a composition root that starts a trace of its own
// (`council dev -trace`, the end-to-end test).
func (t *Telemetry) Tracer() trace.Tracer {
	if t == nil {
		return noop.NewTracerProvider().Tracer(scope)
	}
	return t.tracer
}

// MetricsHandler serves t's metrics as Prometheus text (GET /metrics).
func (t *Telemetry) MetricsHandler() http.Handler {
	if t == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{})
}

// ForceFlush exports the spans and metrics buffered so far.
func (t *Telemetry) ForceFlush(ctx context.Context) error {
	if t == nil {
		return nil
	}
	var errs []error
	if t.tp != nil {
		errs = append(errs, t.tp.ForceFlush(ctx))
	}
	errs = append(errs, t.mp.ForceFlush(ctx))
	return errors.Join(errs...)
}

// Shutdown flushes and stops t's exporters. Spans ended after it are
// dropped.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	var errs []error
	if t.tp != nil {
		errs = append(errs, t.tp.Shutdown(ctx))
	}
	errs = append(errs, t.mp.Shutdown(ctx))
	return errors.Join(errs...)
}

// Pending records a JetStream consumer's queue lag (natsjs.Observer).
func (t *Telemetry) Pending(ctx context.Context, consumer string, pending uint64) {
	if t == nil {
		return
	}
	t.m.pending.Record(ctx, int64(min(pending, uint64(1)<<62)), t.set("consumer", consumer))
}

// Duplicate counts an event the broker dropped as a duplicate
// (natsjs.Observer).
func (t *Telemetry) Duplicate(ctx context.Context, eventType string) {
	if t == nil {
		return
	}
	t.m.duplicates.Add(ctx, 1, t.set("type", shortType(eventType)))
}

// DeliberationEnded records the end of a deliberation with outcome
// (completed, failed, cancelled) that took d.
func (t *Telemetry) DeliberationEnded(ctx context.Context, outcome string, d time.Duration) {
	if t == nil {
		return
	}
	set := t.set("outcome", outcome)
	t.m.ended.Add(ctx, 1, set)
	if d > 0 {
		t.m.deliberation.Record(ctx, d.Seconds(), set)
	}
}

// shortType is an event type without council's prefix and version,
// "dev.council.proposal.requested.v1" → "proposal.requested", for span
// names and metric labels; other types are kept whole.
func shortType(t string) string {
	const prefix = "dev.council."
	if len(t) > len(prefix) && t[:len(prefix)] == prefix {
		t = t[len(prefix):]
		if i := lastDot(t); i > 0 && len(t) > i+2 && t[i+1] == 'v' {
			t = t[:i]
		}
	}
	return t
}

func lastDot(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '.' {
			return i
		}
	}
	return -1
}
