package rayjobs

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"time"
)

// DefaultTimeout is the timeout of the default HTTP client, per request.
const DefaultTimeout = 30 * time.Second

// Option configures a Client.
type Option func(*options) error

type options struct {
	httpClient *http.Client
	headers    http.Header
	logger     *slog.Logger
	numCPUs    float64
	numGPUs    float64
	resources  map[string]float64
	runtimeEnv map[string]any
	baseEnv    map[string]string
}

func newOptions(opts []Option) (options, error) {
	o := options{
		httpClient: &http.Client{Timeout: DefaultTimeout},
		headers:    http.Header{},
		logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&o); err != nil {
			return options{}, fmt.Errorf("rayjobs: option: %w", err)
		}
	}
	return o, nil
}

// WithHTTPClient sets the HTTP client. The default has a timeout of
// DefaultTimeout per request.
func WithHTTPClient(c *http.Client) Option {
	return func(o *options) error {
		if c == nil {
			return errors.New("nil HTTP client")
		}
		o.httpClient = c
		return nil
	}
}

// WithHeaders adds headers to every request, for example
// {"Authorization": "Bearer <token>"} for a cluster with token
// authentication or behind an authenticating proxy.
func WithHeaders(h map[string]string) Option {
	return func(o *options) error {
		for k, v := range h {
			if k == "" {
				return errors.New("header with an empty name")
			}
			o.headers.Set(k, v)
		}
		return nil
	}
}

// WithEntrypointResources reserves resources for a job's entrypoint command,
// apart from the tasks and actors it creates: CPUs, GPUs and custom
// resources. Zero means none reserved, Ray's default. Ray queues a job whose
// entrypoint needs more than the cluster has.
func WithEntrypointResources(numCPUs, numGPUs float64, resources map[string]float64) Option {
	return func(o *options) error {
		if err := checkAmount("CPUs", numCPUs); err != nil {
			return err
		}
		if err := checkAmount("GPUs", numGPUs); err != nil {
			return err
		}
		for name, v := range resources {
			if name == "" {
				return errors.New("entrypoint resource with an empty name")
			}
			if err := checkAmount("resource "+name, v); err != nil {
				return err
			}
		}
		o.numCPUs, o.numGPUs, o.resources = numCPUs, numGPUs, maps.Clone(resources)
		return nil
	}
}

func checkAmount(what string, v float64) error {
	if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("entrypoint %s %v: must be a finite number >= 0", what, v)
	}
	return nil
}

// WithRuntimeEnv sets the runtime environment every job starts from, in
// Ray's runtime_env form (pip, env_vars, working_dir, ...). JobSpec.Env is
// merged into its env_vars, a job's value winning, and JobSpec.WorkingDir, when
// set, replaces its working_dir. env_vars, if present, must map names to
// strings.
func WithRuntimeEnv(base map[string]any) Option {
	return func(o *options) error {
		env := maps.Clone(base)
		var vars map[string]string
		switch v := env["env_vars"].(type) {
		case nil:
		case map[string]string:
			vars = maps.Clone(v)
		case map[string]any:
			vars = make(map[string]string, len(v))
			for k, val := range v {
				s, ok := val.(string)
				if !ok {
					return fmt.Errorf("runtime env: env_vars[%q] is %T, want string", k, val)
				}
				vars[k] = s
			}
		default:
			return fmt.Errorf("runtime env: env_vars is %T, want map[string]string", v)
		}
		delete(env, "env_vars")
		o.runtimeEnv, o.baseEnv = env, vars
		return nil
	}
}

// WithLogger sets the logger; requests are logged at debug level. The
// default discards.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("nil logger")
		}
		o.logger = l
		return nil
	}
}
