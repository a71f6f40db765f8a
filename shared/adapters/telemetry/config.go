package telemetry

import (
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Exporter names of Config.TracesExporter and Config.MetricsExporter
// (OTEL_TRACES_EXPORTER, OTEL_METRICS_EXPORTER).
const (
	ExporterOTLP = "otlp"
	ExporterNone = "none"
)

// DefaultOTLPEndpoint is where OTLP goes over HTTP when an exporter is
// asked for (OTEL_TRACES_EXPORTER=otlp) and no endpoint is given: the
// OpenTelemetry default.
const DefaultOTLPEndpoint = "http://localhost:4318"

// Config says what a Telemetry exports. The composition root fills it from
// the standard OTEL_* variables (host.LoadConfig); the zero Config traces
// nothing and serves metrics on /metrics only.
type Config struct {
	// ServiceName is the service.name of every span and metric
	// (OTEL_SERVICE_NAME); empty: "council-<function>".
	ServiceName string
	// Disabled turns the OpenTelemetry SDK off (OTEL_SDK_DISABLED=true): no
	// spans and no OTLP. /metrics is served still.
	Disabled bool
	// Endpoint is the OTLP/HTTP base URL, e.g. http://collector:4318
	// (OTEL_EXPORTER_OTLP_ENDPOINT); /v1/traces and /v1/metrics are added.
	Endpoint string
	// TracesEndpoint and MetricsEndpoint are full URLs that override
	// Endpoint for one signal (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
	// OTEL_EXPORTER_OTLP_METRICS_ENDPOINT).
	TracesEndpoint, MetricsEndpoint string
	// Headers are sent with every OTLP request (OTEL_EXPORTER_OTLP_HEADERS).
	Headers map[string]string
	// TracesExporter is "otlp" or "none" (OTEL_TRACES_EXPORTER); empty:
	// otlp when an endpoint is set, none otherwise.
	TracesExporter string
	// MetricsExporter is "otlp" or "none" (OTEL_METRICS_EXPORTER); empty:
	// otlp when an endpoint is set, none otherwise. /metrics is served
	// whatever it says.
	MetricsExporter string
	// SampleRatio is the share of new traces recorded (OTEL_TRACES_SAMPLER
	// traceidratio or parentbased_traceidratio with OTEL_TRACES_SAMPLER_ARG);
	// a span whose parent was sampled is always recorded. 0 means 1.
	SampleRatio float64
	// MetricInterval is the period of the OTLP metric export
	// (OTEL_METRIC_EXPORT_INTERVAL); 0: 60 s.
	MetricInterval time.Duration
	// ResourceAttributes are added to the resource
	// (OTEL_RESOURCE_ATTRIBUTES).
	ResourceAttributes map[string]string
}

// TracesURL returns where spans go, or "" when tracing is off.
func (c Config) TracesURL() string {
	return c.signalURL(c.TracesExporter, c.TracesEndpoint, "/v1/traces")
}

// MetricsURL returns where metrics are pushed with OTLP, or "" when they
// are not (they are still served on /metrics).
func (c Config) MetricsURL() string {
	return c.signalURL(c.MetricsExporter, c.MetricsEndpoint, "/v1/metrics")
}

func (c Config) signalURL(exporter, full, path string) string {
	if c.Disabled || exporter == ExporterNone {
		return ""
	}
	switch {
	case full != "":
		return full
	case c.Endpoint != "":
		return joinPath(c.Endpoint, path)
	case exporter == ExporterOTLP:
		return joinPath(DefaultOTLPEndpoint, path)
	}
	return ""
}

// joinPath appends path to base's path (the OTLP/HTTP rule for
// OTEL_EXPORTER_OTLP_ENDPOINT).
func joinPath(base, path string) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	for len(u.Path) > 0 && u.Path[len(u.Path)-1] == '/' {
		u.Path = u.Path[:len(u.Path)-1]
	}
	u.Path += path
	return u.String()
}

// Check returns an error naming what is wrong with c.
func (c Config) Check() error {
	var errs []error
	for _, e := range []struct{ name, v string }{
		{"traces exporter", c.TracesExporter}, {"metrics exporter", c.MetricsExporter},
	} {
		if e.v != "" && e.v != ExporterOTLP && e.v != ExporterNone {
			errs = append(errs, fmt.Errorf("%s %q: want otlp or none", e.name, e.v))
		}
	}
	for _, u := range []string{c.Endpoint, c.TracesEndpoint, c.MetricsEndpoint} {
		if u == "" {
			continue
		}
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			errs = append(errs, fmt.Errorf("OTLP endpoint %q: want an http or https URL", u))
		}
	}
	if c.SampleRatio < 0 || c.SampleRatio > 1 {
		errs = append(errs, fmt.Errorf("sample ratio %v: want 0 to 1", c.SampleRatio))
	}
	if c.MetricInterval < 0 {
		errs = append(errs, fmt.Errorf("metric interval %v is negative", c.MetricInterval))
	}
	return errors.Join(errs...)
}
