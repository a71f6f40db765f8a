package host_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"council.dev/shared/adapters/telemetry"
	"council.dev/shared/host"
)

// TestRunServesMetricsAndContinuesTraces: GET /metrics is Prometheus text,
// open like /health when the query routes need a token; an event whose
// sender put its trace in the W3C traceparent header (Knative's broker) is
// handled in that trace, and its reply carries the trace on
// (ce-traceparent).
func TestRunServesMetricsAndContinuesTraces(t *testing.T) {
	port := freePort(t)
	cfg, err := host.LoadConfig(func(k string) string {
		return map[string]string{"PORT": fmt.Sprint(port), "COUNCIL_QUERY_TOKEN": "s3cret-token-of-32-characters-xx"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	exp := tracetest.NewInMemoryExporter()
	tel, err := host.NewTelemetry(context.Background(), cfg, "fn", telemetry.WithSpanExporter(exp), telemetry.WithSyncExport())
	if err != nil {
		t.Fatal(err)
	}
	init := func(context.Context) (host.Function, error) {
		return host.Function{Handle: echo, Telemetry: tel, Routes: map[string]http.Handler{
			"GET /status": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }),
		}}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- host.Run(ctx, cfg, "fn", []string{"t"}, init, slog.New(slog.DiscardHandler)) }()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitStatus(t, base+"/health/readiness", http.StatusOK)

	const traceID, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	req, err := cehttp.NewHTTPRequestFromEvent(t.Context(), base, testEvent(t, "e-1", "dev.council.test.v1"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("traceparent", "00-"+traceID+"-"+parent+"-01")
	resp := do(t, req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("event: %d", resp.StatusCode)
	}
	spans := exp.GetSpans().Snapshots()
	if len(spans) != 1 || spans[0].SpanContext().TraceID().String() != traceID || spans[0].Parent().SpanID().String() != parent {
		t.Fatalf("spans %+v: want one, in trace %s under %s", spans, traceID, parent)
	}
	if got, want := resp.Header.Get("Ce-Traceparent"), "00-"+traceID+"-"+spans[0].SpanContext().SpanID().String()+"-01"; got != want {
		t.Errorf("reply ce-traceparent %q, want %q", got, want)
	}

	if got := getStatus(t, base+"/status"); got != http.StatusUnauthorized {
		t.Errorf("/status without the token = %d, want 401", got)
	}
	mreq, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	mresp, err := http.DefaultClient.Do(mreq)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(mresp.Body)
	_ = mresp.Body.Close()
	if mresp.StatusCode != http.StatusOK || !strings.HasPrefix(mresp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics without a token: %d %s, want 200 text/plain", mresp.StatusCode, mresp.Header.Get("Content-Type"))
	}
	if want := `council_events_handled_total{function="fn",outcome="replied",type="test"} 1`; !strings.Contains(string(body), want) {
		t.Errorf("/metrics lacks %s:\n%s", want, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// TestLoadConfigTelemetry: the OTEL_* variables council reads.
func TestLoadConfigTelemetry(t *testing.T) {
	env := map[string]string{
		"OTEL_SERVICE_NAME":                  "council-x",
		"OTEL_EXPORTER_OTLP_ENDPOINT":        "http://collector:4318",
		"OTEL_EXPORTER_OTLP_HEADERS":         "authorization=Bearer abc, x-org = c",
		"OTEL_EXPORTER_OTLP_PROTOCOL":        "http/protobuf",
		"OTEL_METRICS_EXPORTER":              "prometheus",
		"OTEL_TRACES_SAMPLER":                "parentbased_traceidratio",
		"OTEL_TRACES_SAMPLER_ARG":            "0.25",
		"OTEL_METRIC_EXPORT_INTERVAL":        "5000",
		"OTEL_RESOURCE_ATTRIBUTES":           "deployment.environment=dev",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces.example/v1/traces",
	}
	cfg, err := host.LoadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Telemetry
	want := telemetry.Config{
		ServiceName: "council-x", Endpoint: "http://collector:4318", TracesEndpoint: "https://traces.example/v1/traces",
		Headers: map[string]string{"authorization": "Bearer abc", "x-org": "c"}, MetricsExporter: "none",
		SampleRatio: 0.25, MetricInterval: 5e9, ResourceAttributes: map[string]string{"deployment.environment": "dev"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("telemetry config (-want +got):\n%s", d)
	}
	if got.TracesURL() != "https://traces.example/v1/traces" || got.MetricsURL() != "" {
		t.Errorf("traces to %q, metrics to %q", got.TracesURL(), got.MetricsURL())
	}
	for name, v := range map[string]string{
		"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_TRACES_EXPORTER": "zipkin", "OTEL_SDK_DISABLED": "maybe",
		"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318", "OTEL_TRACES_SAMPLER": "jaeger_remote", "OTEL_METRIC_EXPORT_INTERVAL": "soon",
	} {
		if _, err := host.LoadConfig(func(k string) string { return map[string]string{name: v}[k] }); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%q: error %v, want one naming it", name, v, err)
		}
	}
	if cfg, _ := host.LoadConfig(func(string) string { return "" }); cfg.Telemetry.TracesURL() != "" {
		t.Errorf("tracing on by default: %q", cfg.Telemetry.TracesURL())
	}
}
