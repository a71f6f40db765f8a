package host

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/adapters/telemetry"
	"council.dev/shared/council"
	"council.dev/shared/redact"
)

// Transport says how a function receives its events.
type Transport string

// The transports of COUNCIL_TRANSPORT.
const (
	// TransportHTTP serves the CloudEvents receiver (Knative).
	TransportHTTP Transport = "http"
	// TransportJetStream runs a durable JetStream consumer.
	TransportJetStream Transport = "jetstream"
)

// NATSSetup says what a function does with council's NATS topology at
// start.
type NATSSetup string

// The values of COUNCIL_NATS_SETUP.
const (
	// NATSSetupCreate creates or updates the topology at every start (the
	// default: the local stack, tests, a first deployment).
	NATSSetupCreate NATSSetup = "create"
	// NATSSetupBind only looks the topology up, set up once beforehand
	// (`council setup`, the council-setup Job), and fails at once, not
	// retried, when a part is missing or incompatible: the cheaper start
	// of a function started from zero (Knative).
	NATSSetupBind NATSSetup = "bind"
)

// Config is the environment of a function, read once at the composition
// root by LoadConfig. See docs/CONVENTIONS.md for the variables.
type Config struct {
	// Port is the HTTP port (PORT).
	Port int
	// Transport is http or jetstream (COUNCIL_TRANSPORT).
	Transport Transport
	// NATSURL is the NATS server (COUNCIL_NATS_URL).
	NATSURL string
	// LLMURL is the OpenAI-compatible base URL (COUNCIL_LLM_URL).
	LLMURL string
	// LLMModel is the default model (COUNCIL_LLM_MODEL).
	LLMModel string
	// LLMModels are the models a request may ask for (COUNCIL_LLM_MODELS);
	// they always include LLMModel.
	LLMModels []string
	// LLMTimeout bounds one LLM call (COUNCIL_LLM_TIMEOUT).
	LLMTimeout time.Duration
	// LLMRetries is how often an LLM call is retried (COUNCIL_LLM_RETRIES).
	LLMRetries int
	// LLMAPIKey is the bearer token for the LLM server (COUNCIL_LLM_API_KEY,
	// or the file COUNCIL_LLM_API_KEY_FILE).
	LLMAPIKey string
	// NATSAuth authenticates and secures the NATS connection
	// (COUNCIL_NATS_CREDS, COUNCIL_NATS_NKEY, COUNCIL_NATS_JWT,
	// COUNCIL_NATS_USER, COUNCIL_NATS_PASSWORD, COUNCIL_NATS_TOKEN,
	// COUNCIL_NATS_TLS_CA, COUNCIL_NATS_TLS_CERT, COUNCIL_NATS_TLS_KEY).
	NATSAuth NATSAuth
	// RayHeaders are sent with every request to the Ray Jobs API
	// (COUNCIL_RAY_HEADERS, a JSON object; COUNCIL_RAY_TOKEN or
	// COUNCIL_RAY_TOKEN_FILE adds Authorization: Bearer); nil when unset.
	RayHeaders map[string]string
	// QueryToken, when set, is the bearer token the query routes (GET
	// /deliberations, /jobs, /status; rayexecutor's gRPC) require
	// (COUNCIL_QUERY_TOKEN or COUNCIL_QUERY_TOKEN_FILE).
	QueryToken string
	// OIDC verifies the sender of events over HTTP when enabled
	// (COUNCIL_AUTH_OIDC_*).
	OIDC OIDC
	// RayJobLLMAPIKeyFile is where the Ray cluster keeps the LLM API key,
	// a path on its nodes handed to the council-agent job as
	// COUNCIL_LLM_API_KEY_FILE (COUNCIL_RAY_JOB_LLM_API_KEY_FILE); the key
	// itself never goes into a job.
	RayJobLLMAPIKeyFile string
	// RayJobNATSCreds is where the Ray cluster keeps the job's NATS
	// credentials file, handed to the job as COUNCIL_NATS_CREDS
	// (COUNCIL_RAY_JOB_NATS_CREDS).
	RayJobNATSCreds string
	// Sink is where execute posts its fan-out over HTTP (K_SINK); empty when
	// unset.
	Sink string
	// Source is the CloudEvents source of emitted events (COUNCIL_SOURCE);
	// empty when unset, see SourceFor.
	Source string
	// RayAddress is the Ray dashboard URL (COUNCIL_RAY_ADDRESS); empty when
	// unset.
	RayAddress string
	// RayAgentDir is the working directory of the council-agent Ray job
	// (COUNCIL_RAY_AGENT_DIR): a local directory holding the council-agent
	// binary, uploaded to the cluster, or a URI the cluster fetches; empty
	// when unset.
	RayAgentDir string
	// RayPool, when above 0, runs backend ray in the warm pool (ADR 10): at
	// least this many long-lived Ray jobs of council-agent workers take the
	// deliberations from a JetStream work queue (COUNCIL_RAY_POOL; 0, the
	// default, submits one Ray job per deliberation).
	RayPool int
	// RayPoolMax is the most pool jobs execute starts as the queue grows
	// (COUNCIL_RAY_POOL_MAX; default RayPool).
	RayPoolMax int
	// RayPoolWorkers is how many deliberations one pool job runs at once
	// (COUNCIL_RAY_POOL_WORKERS; default DefaultRayPoolWorkers).
	RayPoolWorkers int
	// RayPoolAckWait is how long a pool worker may stay silent before its
	// deliberation goes to another worker (COUNCIL_RAY_POOL_ACK_WAIT;
	// 0: the queue's default, 30 s).
	RayPoolAckWait time.Duration
	// NATSSetup says whether a start creates or updates the NATS topology
	// or binds to it (COUNCIL_NATS_SETUP); empty when unset, which is
	// NATSSetupCreate.
	NATSSetup NATSSetup
	// NATS names the streams and bucket and sets their replicas
	// (COUNCIL_NATS_BUCKET, COUNCIL_NATS_INDEX_BUCKET, COUNCIL_NATS_TOKENS_STREAM,
	// COUNCIL_NATS_TOKENS_SUBJECTS, COUNCIL_NATS_TOKENS_MAX_AGE,
	// COUNCIL_NATS_REPLICAS); unset variables keep natsjs.DefaultTopology.
	NATS natsjs.Topology
	// LogLevel is the slog level name (COUNCIL_LOG_LEVEL).
	LogLevel string
	// LegacySubjects turns on the compatibility publisher that feeds the
	// old fleet's consumers on agent.response.* (COUNCIL_LEGACY_SUBJECTS).
	LegacySubjects bool
	// Telemetry says where traces and metrics go: the standard
	// OpenTelemetry variables OTEL_SERVICE_NAME, OTEL_SDK_DISABLED,
	// OTEL_EXPORTER_OTLP_ENDPOINT (and its _TRACES_ / _METRICS_ forms),
	// OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_PROTOCOL
	// (http/protobuf only), OTEL_TRACES_EXPORTER, OTEL_METRICS_EXPORTER,
	// OTEL_TRACES_SAMPLER(_ARG), OTEL_METRIC_EXPORT_INTERVAL,
	// OTEL_RESOURCE_ATTRIBUTES. The zero value traces nothing.
	Telemetry telemetry.Config
}

// Defaults of LoadConfig.
const (
	DefaultPort       = 8080
	DefaultNATSURL    = "nats://127.0.0.1:4222"
	DefaultLLMURL     = "http://127.0.0.1:8088/v1"
	DefaultLLMModel   = "council-tiny"
	DefaultLLMTimeout = 120 * time.Second
	DefaultLLMRetries = 3
	// DefaultRayPoolWorkers is how many deliberations one pool job runs at
	// once.
	DefaultRayPoolWorkers = 8
	DefaultLogLevel       = "info"
)

// BindNATS reports whether a start binds to the NATS topology set up
// beforehand instead of creating it (COUNCIL_NATS_SETUP=bind).
func (c Config) BindNATS() bool { return c.NATSSetup == NATSSetupBind }

// Addr is the listen address for Port, e.g. ":8080".
func (c Config) Addr() string { return ":" + strconv.Itoa(c.Port) }

// SourceFor returns Source, or "council.dev/<function>" when COUNCIL_SOURCE
// is unset.
func (c Config) SourceFor(function string) string {
	if c.Source != "" {
		return c.Source
	}
	return "council.dev/" + function
}

// LoadConfig reads the configuration through getenv (os.Getenv at the
// composition root, a map in tests). An unset or blank variable takes its
// default. It returns an error wrapping council.ErrInvalid that names every
// variable with an invalid value.
func LoadConfig(getenv func(string) string) (Config, error) {
	get := func(name string) string { return strings.TrimSpace(getenv(name)) }
	var errs []error
	bad := func(name, value, why string) {
		errs = append(errs, fmt.Errorf("%s=%q: %s", name, value, why))
	}

	c := Config{
		Port:        DefaultPort,
		Transport:   TransportHTTP,
		NATSURL:     DefaultNATSURL,
		LLMURL:      DefaultLLMURL,
		LLMModel:    DefaultLLMModel,
		LLMTimeout:  DefaultLLMTimeout,
		LLMRetries:  DefaultLLMRetries,
		Source:      get("COUNCIL_SOURCE"),
		RayAgentDir: get("COUNCIL_RAY_AGENT_DIR"),
		LogLevel:    DefaultLogLevel,
		NATS:        natsjs.DefaultTopology(),
	}

	if v := get("PORT"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 {
			bad("PORT", v, "want a port number 1-65535")
		} else {
			c.Port = p
		}
	}
	if v := get("COUNCIL_TRANSPORT"); v != "" {
		switch t := Transport(strings.ToLower(v)); t {
		case TransportHTTP, TransportJetStream:
			c.Transport = t
		default:
			bad("COUNCIL_TRANSPORT", v, `want "http" or "jetstream"`)
		}
	}
	urls := []struct {
		name    string
		dst     *string
		schemes []string
	}{
		{"COUNCIL_NATS_URL", &c.NATSURL, []string{"nats", "tls", "ws", "wss"}},
		{"COUNCIL_LLM_URL", &c.LLMURL, []string{"http", "https"}},
		{"K_SINK", &c.Sink, []string{"http", "https"}},
		{"COUNCIL_RAY_ADDRESS", &c.RayAddress, []string{"http", "https"}},
	}
	for _, u := range urls {
		v := get(u.name)
		if v == "" {
			continue
		}
		if why := checkURL(v, u.schemes); why != "" {
			bad(u.name, redact.URL(v), why)
			continue
		}
		*u.dst = v
	}
	if v := get("COUNCIL_NATS_SETUP"); v != "" {
		switch m := NATSSetup(strings.ToLower(v)); m {
		case NATSSetupCreate, NATSSetupBind:
			c.NATSSetup = m
		default:
			bad("COUNCIL_NATS_SETUP", v, `want "create" or "bind"`)
		}
	}
	if v := get("COUNCIL_NATS_REPLICAS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 5 {
			bad("COUNCIL_NATS_REPLICAS", v, "want 1 to 5")
		} else {
			c.NATS.Replicas = n
		}
	}
	if v := get("COUNCIL_NATS_STATE_TTL"); v != "" {
		d, err := time.ParseDuration(v)
		switch {
		case err != nil || d < 0:
			bad("COUNCIL_NATS_STATE_TTL", v, "want a duration such as 168h, or 0 to keep state forever")
		case d == 0:
			c.NATS.BucketTTL = -1
		default:
			c.NATS.BucketTTL = d
		}
	}
	if v := get("COUNCIL_NATS_BUCKET"); v != "" {
		c.NATS.Bucket = v
	}
	if v := get("COUNCIL_NATS_INDEX_BUCKET"); v != "" {
		c.NATS.IndexBucket = v
	}
	if v := get("COUNCIL_NATS_TOKENS_STREAM"); v != "" {
		c.NATS.TokensStream = v
	}
	if v := get("COUNCIL_NATS_TOKENS_SUBJECTS"); v != "" {
		prefix, ok := strings.CutSuffix(v, ".>")
		if !ok || prefix == "" || strings.ContainsAny(prefix, "*> ") {
			bad("COUNCIL_NATS_TOKENS_SUBJECTS", v, `want "<prefix>.>", e.g. "council.stream.>"`)
		} else {
			c.NATS.TokensSubjectPrefix = prefix
		}
	}
	if v := get("COUNCIL_NATS_TOKENS_MAX_AGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			bad("COUNCIL_NATS_TOKENS_MAX_AGE", v, "want a positive duration such as 1h")
		} else {
			c.NATS.TokensMaxAge = d
		}
	}
	if v := get("COUNCIL_LLM_MODEL"); v != "" {
		c.LLMModel = v
	}
	c.LLMModels = []string{c.LLMModel}
	if v := get("COUNCIL_LLM_MODELS"); v != "" {
		var models []string
		for m := range strings.SplitSeq(v, ",") {
			if m = strings.TrimSpace(m); m != "" && !slices.Contains(models, m) {
				models = append(models, m)
			}
		}
		switch {
		case len(models) == 0:
			bad("COUNCIL_LLM_MODELS", v, "want a comma-separated list of model names")
		case !slices.Contains(models, c.LLMModel):
			bad("COUNCIL_LLM_MODELS", v, fmt.Sprintf("does not include the default model %q (COUNCIL_LLM_MODEL)", c.LLMModel))
		default:
			c.LLMModels = models
		}
	}
	if v := get("COUNCIL_LLM_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			bad("COUNCIL_LLM_TIMEOUT", v, `want a positive duration such as "120s" or "2m"`)
		} else {
			c.LLMTimeout = d
		}
	}
	if v := get("COUNCIL_LLM_RETRIES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			bad("COUNCIL_LLM_RETRIES", v, "want a whole number >= 0")
		} else {
			c.LLMRetries = n
		}
	}
	for _, n := range []struct {
		name string
		to   *int
	}{{"COUNCIL_RAY_POOL", &c.RayPool}, {"COUNCIL_RAY_POOL_MAX", &c.RayPoolMax}, {"COUNCIL_RAY_POOL_WORKERS", &c.RayPoolWorkers}} {
		if v := get(n.name); v != "" {
			k, err := strconv.Atoi(v)
			if err != nil || k < 0 || k > 1024 {
				bad(n.name, v, "want a whole number 0-1024")
			} else {
				*n.to = k
			}
		}
	}
	c.RayPoolMax = max(c.RayPoolMax, c.RayPool)
	if v := get("COUNCIL_RAY_POOL_ACK_WAIT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			bad("COUNCIL_RAY_POOL_ACK_WAIT", v, `want a duration of at least 1s, such as "30s"`)
		} else {
			c.RayPoolAckWait = d
		}
	}
	if c.RayPoolWorkers == 0 {
		c.RayPoolWorkers = DefaultRayPoolWorkers
	}
	if v := get("COUNCIL_LEGACY_SUBJECTS"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad("COUNCIL_LEGACY_SUBJECTS", v, `want "true" or "false"`)
		} else {
			c.LegacySubjects = b
		}
	}
	if v := get("COUNCIL_LOG_LEVEL"); v != "" {
		var l slog.Level
		if err := l.UnmarshalText([]byte(v)); err != nil {
			bad("COUNCIL_LOG_LEVEL", v, `want "debug", "info", "warn" or "error"`)
		} else {
			c.LogLevel = strings.ToLower(v)
		}
	}
	loadSecurity(get, bad, &c)
	loadTelemetry(get, bad, &c)

	if len(errs) > 0 {
		return Config{}, fmt.Errorf("host: config: %w: %w", council.ErrInvalid, errors.Join(errs...))
	}
	return c, nil
}

// checkURL returns why v is not an absolute URL with one of schemes, or "".
func checkURL(v string, schemes []string) string {
	u, err := url.Parse(v)
	if err != nil {
		return "not a URL: " + redact.Text(err.Error())
	}
	if !slices.Contains(schemes, strings.ToLower(u.Scheme)) || u.Host == "" {
		return fmt.Sprintf("want an absolute URL with scheme %s", strings.Join(schemes, ", "))
	}
	return ""
}

// NewLogger returns a JSON slog logger writing to w at level ("debug",
// "info", "warn", "error", case-insensitive); an unknown or empty level
// means info. LoadConfig rejects unknown levels before they get here.
func NewLogger(level string, w io.Writer) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.TrimSpace(level))); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// JobEnv returns the variables a job started on another machine (the
// council-agent Ray job) needs to reach the same NATS and LLM server and log
// at the same level: COUNCIL_NATS_URL (without any userinfo),
// COUNCIL_LOG_LEVEL, the COUNCIL_LLM_* variables but the key, and
// COUNCIL_LEGACY_SUBJECTS when it is on (the job publishes the old subjects
// too). No secret goes into it, since Ray shows a job's environment on its
// dashboard and Jobs API: the job reads its secrets where the Ray cluster
// keeps them, COUNCIL_LLM_API_KEY_FILE from RayJobLLMAPIKeyFile and
// COUNCIL_NATS_CREDS from RayJobNATSCreds (paths on the cluster's nodes).
func (c Config) JobEnv() map[string]string {
	env := map[string]string{
		"COUNCIL_NATS_URL":    stripUserinfo(c.NATSURL),
		"COUNCIL_LLM_URL":     c.LLMURL,
		"COUNCIL_LLM_MODEL":   c.LLMModel,
		"COUNCIL_LLM_MODELS":  strings.Join(c.LLMModels, ","),
		"COUNCIL_LLM_TIMEOUT": c.LLMTimeout.String(),
		"COUNCIL_LLM_RETRIES": strconv.Itoa(c.LLMRetries),
		"COUNCIL_LOG_LEVEL":   c.LogLevel,
	}
	if c.RayJobLLMAPIKeyFile != "" {
		env["COUNCIL_LLM_API_KEY_FILE"] = c.RayJobLLMAPIKeyFile
	}
	if c.RayJobNATSCreds != "" {
		env["COUNCIL_NATS_CREDS"] = c.RayJobNATSCreds
	}
	if c.LegacySubjects {
		env["COUNCIL_LEGACY_SUBJECTS"] = "true"
	}
	return env
}

// stripUserinfo removes the credentials of every URL of a NATS URL list.
func stripUserinfo(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			u.User = nil
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}
