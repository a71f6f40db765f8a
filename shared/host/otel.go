package host

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"council.dev/shared/adapters/telemetry"
	"council.dev/shared/redact"
)

// loadTelemetry reads the standard OpenTelemetry variables that council
// honours (docs/CONVENTIONS.md) into c.Telemetry; bad reports each invalid
// one. Only OTLP over HTTP (http/protobuf) is spoken.
func loadTelemetry(get func(string) string, bad func(name, value, why string), c *Config) {
	t := &c.Telemetry
	t.ServiceName = get("OTEL_SERVICE_NAME")
	if v := get("OTEL_SDK_DISABLED"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad("OTEL_SDK_DISABLED", v, `want "true" or "false"`)
		}
		t.Disabled = b
	}
	for _, e := range []struct {
		name string
		dst  *string
	}{
		{"OTEL_EXPORTER_OTLP_ENDPOINT", &t.Endpoint},
		{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &t.TracesEndpoint},
		{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", &t.MetricsEndpoint},
	} {
		v := get(e.name)
		if v == "" {
			continue
		}
		if why := checkURL(v, []string{"http", "https"}); why != "" {
			bad(e.name, redact.URL(v), why)
			continue
		}
		*e.dst = v
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"} {
		if v := get(name); v != "" && v != "http/protobuf" {
			bad(name, v, `only "http/protobuf" (OTLP over HTTP) is supported`)
		}
	}
	if v := get("OTEL_EXPORTER_OTLP_HEADERS"); v != "" {
		h, err := keyValues(v)
		if err != nil {
			bad("OTEL_EXPORTER_OTLP_HEADERS", "(hidden)", err.Error())
		}
		t.Headers = h
	}
	if v := get("OTEL_RESOURCE_ATTRIBUTES"); v != "" {
		a, err := keyValues(v)
		if err != nil {
			bad("OTEL_RESOURCE_ATTRIBUTES", v, err.Error())
		}
		t.ResourceAttributes = a
	}
	for _, e := range []struct {
		name string
		dst  *string
		ok   []string
	}{
		{"OTEL_TRACES_EXPORTER", &t.TracesExporter, []string{telemetry.ExporterOTLP, telemetry.ExporterNone}},
		{"OTEL_METRICS_EXPORTER", &t.MetricsExporter, []string{telemetry.ExporterOTLP, telemetry.ExporterNone, "prometheus"}},
	} {
		switch v := strings.ToLower(get(e.name)); v {
		case "":
		case "prometheus":
			// Prometheus is always served on /metrics: no OTLP push.
			*e.dst = telemetry.ExporterNone
		case telemetry.ExporterOTLP, telemetry.ExporterNone:
			*e.dst = v
		default:
			bad(e.name, v, "want "+strings.Join(e.ok, ", "))
		}
	}
	if v := strings.ToLower(get("OTEL_TRACES_SAMPLER")); v != "" {
		switch v {
		case "always_on", "parentbased_always_on":
		case "always_off", "parentbased_always_off":
			t.TracesExporter = telemetry.ExporterNone
		case "traceidratio", "parentbased_traceidratio":
			t.SampleRatio = 1
			if a := get("OTEL_TRACES_SAMPLER_ARG"); a != "" {
				r, err := strconv.ParseFloat(a, 64)
				switch {
				case err != nil || r < 0 || r > 1:
					bad("OTEL_TRACES_SAMPLER_ARG", a, "want a ratio from 0 to 1")
				case r > 0:
					t.SampleRatio = r
				default:
					t.TracesExporter = telemetry.ExporterNone
				}
			}
		default:
			bad("OTEL_TRACES_SAMPLER", v, "want always_on, always_off, traceidratio or their parentbased_ forms")
		}
	}
	if v := get("OTEL_METRIC_EXPORT_INTERVAL"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms <= 0 {
			bad("OTEL_METRIC_EXPORT_INTERVAL", v, "want milliseconds, above 0")
		} else {
			t.MetricInterval = time.Duration(ms) * time.Millisecond
		}
	}
}

// keyValues parses the W3C Baggage-like list of OTEL_EXPORTER_OTLP_HEADERS
// and OTEL_RESOURCE_ATTRIBUTES: key=value pairs separated by commas.
func keyValues(v string) (map[string]string, error) {
	m := map[string]string{}
	for part := range strings.SplitSeq(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, val, ok := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("want key=value pairs separated by commas")
		}
		m[k] = strings.TrimSpace(val)
	}
	return m, nil
}

// NewTelemetry returns the telemetry of function as cfg.Telemetry (the
// OTEL_* variables) describes it: spans to OTLP when an endpoint or
// exporter is set, metrics on /metrics always (Run serves them) and over
// OTLP when configured. Stop it with Shutdown; Run does when the function
// it serves stops.
func NewTelemetry(ctx context.Context, cfg Config, function string, opts ...telemetry.Option) (*telemetry.Telemetry, error) {
	t, err := telemetry.New(ctx, function, cfg.Telemetry, opts...)
	if err != nil {
		return nil, fmt.Errorf("host: %w", err)
	}
	return t, nil
}
