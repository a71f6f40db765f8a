package vllm

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"
)

// Defaults used by New.
const (
	DefaultTimeout     = 120 * time.Second
	DefaultRetries     = 3
	DefaultBackoffBase = 500 * time.Millisecond
	DefaultBackoffMax  = 10 * time.Second
	// DefaultMaxConns is how many concurrent calls the default HTTP client
	// keeps a connection ready for (MaxIdleConnsPerHost): the most a function
	// or a Ray job runs at once (a council's agents in parallel, 32 events
	// of execute's fan-out), with room to spare. Go's default keeps 2, so
	// that every call beyond the second opened a new TCP (and TLS)
	// connection under load.
	DefaultMaxConns = 64
)

// Option configures a Client.
type Option func(*config) error

type config struct {
	allowed     []string
	timeout     time.Duration
	retries     int
	backoffBase time.Duration
	backoffMax  time.Duration
	httpClient  *http.Client
	wrap        func(http.RoundTripper) http.RoundTripper
	maxConns    int
	apiKey      string
	logger      *slog.Logger
	jitter      func(limit time.Duration) time.Duration
	sleep       func(ctx context.Context, d time.Duration) error
}

func defaultConfig() config {
	return config{
		timeout:     DefaultTimeout,
		retries:     DefaultRetries,
		backoffBase: DefaultBackoffBase,
		backoffMax:  DefaultBackoffMax,
		maxConns:    DefaultMaxConns,
		logger:      slog.New(slog.DiscardHandler),
		jitter:      fullJitter,
		sleep:       sleepCtx,
	}
}

// WithAllowedModels sets the models a request may ask for. The default is
// the default model alone. The default model is always allowed.
func WithAllowedModels(models ...string) Option {
	return func(c *config) error {
		for _, m := range models {
			if m == "" {
				return errors.New("allowed models: empty model name")
			}
		}
		c.allowed = append(c.allowed, models...)
		return nil
	}
}

// WithTimeout bounds one attempt of a call, streaming included (default 120s).
func WithTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return errors.New("timeout must be positive")
		}
		c.timeout = d
		return nil
	}
}

// WithRetries sets how many times a call is retried after a transient
// failure (connection error, timeout, 5xx, 429); 0 disables retries
// (default 3, so at most 4 attempts).
func WithRetries(n int) Option {
	return func(c *config) error {
		if n < 0 {
			return errors.New("retries must not be negative")
		}
		c.retries = n
		return nil
	}
}

// WithBackoff sets the exponential backoff between attempts: before retry k
// (from 0) the client sleeps a uniformly random time in [0, min(max, base·2^k)]
// ("full jitter"). Defaults: base 500ms, max 10s.
func WithBackoff(base, max time.Duration) Option {
	return func(c *config) error {
		if base <= 0 || max < base {
			return errors.New("backoff: need 0 < base <= max")
		}
		c.backoffBase, c.backoffMax = base, max
		return nil
	}
}

// WithHTTPClient sets the HTTP client (default: one whose transport keeps
// WithMaxConns idle connections to the server; the per-attempt timeout comes
// from WithTimeout, not from the client). WithMaxConns does not change a
// client set here.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *config) error {
		if hc == nil {
			return errors.New("http client is nil")
		}
		c.httpClient = hc
		return nil
	}
}

// WithTransportWrap wraps the transport of the default HTTP client (its
// pooled connections and drained bodies kept) in wrap, for example to
// observe each HTTP attempt of a call (telemetry.Transport). It does not
// change a client set with WithHTTPClient.
func WithTransportWrap(wrap func(http.RoundTripper) http.RoundTripper) Option {
	return func(c *config) error {
		if wrap == nil {
			return errors.New("transport wrap is nil")
		}
		c.wrap = wrap
		return nil
	}
}

// WithMaxConns sets how many connections to the server the default HTTP
// client keeps open between calls, which should be at least the number of
// calls made at once (default DefaultMaxConns): calls beyond it open a new
// connection each.
func WithMaxConns(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return errors.New("max conns must be at least 1")
		}
		c.maxConns = n
		return nil
	}
}

// newHTTPClient returns the default HTTP client: Go's default transport
// (proxy from the environment, dial and TLS timeouts, HTTP/2 when the
// server offers it) keeping maxConns idle connections to the server.
func newHTTPClient(maxConns int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = max(t.MaxIdleConns, maxConns)
	t.MaxIdleConnsPerHost = maxConns
	t.IdleConnTimeout = 90 * time.Second
	return &http.Client{Transport: drainBody{t}}
}

// drainBody reads what is left of a response body (up to 64 KiB) before
// closing it, so that the connection goes back to the pool: a JSON decoder
// stops after the value and leaves the trailing newline, and a body closed
// before its end closes its connection.
type drainBody struct{ rt http.RoundTripper }

func (d drainBody) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := d.rt.RoundTrip(r)
	if err != nil || resp.Body == nil {
		return resp, err
	}
	resp.Body = &drainingBody{ReadCloser: resp.Body}
	return resp, nil
}

type drainingBody struct{ io.ReadCloser }

func (b *drainingBody) Close() error {
	_, _ = io.Copy(io.Discard, io.LimitReader(b.ReadCloser, 64<<10))
	return b.ReadCloser.Close()
}

// WithAPIKey sends key as a bearer token (vLLM --api-key). Empty sends none.
func WithAPIKey(key string) Option {
	return func(c *config) error {
		c.apiKey = key
		return nil
	}
}

// WithLogger sets the logger (default: discard). Retries are logged at warn
// level; prompts and completions are never logged above debug.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("logger is nil")
		}
		c.logger = l
		return nil
	}
}

// withJitter replaces the random draw of the backoff: jitter(limit) must
// return a duration in [0, limit]. Tests use it (export_test.go) to make
// backoff deterministic.
func withJitter(jitter func(limit time.Duration) time.Duration) Option {
	return func(c *config) error {
		if jitter == nil {
			return errors.New("jitter is nil")
		}
		c.jitter = jitter
		return nil
	}
}

// withSleep replaces the wait between attempts; sleep must return ctx.Err()
// when ctx ends first. Tests use it (export_test.go) to record backoffs
// without waiting.
func withSleep(sleep func(ctx context.Context, d time.Duration) error) Option {
	return func(c *config) error {
		if sleep == nil {
			return errors.New("sleep is nil")
		}
		c.sleep = sleep
		return nil
	}
}

func fullJitter(limit time.Duration) time.Duration {
	if limit <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(limit) + 1))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
