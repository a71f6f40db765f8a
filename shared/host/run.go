package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/adapters/telemetry"
	"council.dev/shared/adapters/vllm"
	"council.dev/shared/council"
	"council.dev/shared/redact"
)

// ConnectNATS connects to cfg.NATSURL with cfg.NATSAuth (retrying while the
// server comes up) and makes sure council's streams and bucket exist:
// creates or updates them (natsjs.Setup) or, with COUNCIL_NATS_SETUP=bind,
// only looks them up (natsjs.Bind), a permanent error when one is missing.
// Its errors name the server with its credentials redacted.
func ConnectNATS(ctx context.Context, cfg Config, name string) (*nats.Conn, jetstream.JetStream, error) {
	nc, js, err := dialNATS(cfg, name)
	if err != nil {
		return nil, nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	setup, what := natsjs.Setup, "set up"
	if cfg.BindNATS() {
		setup, what = natsjs.Bind, "bind"
	}
	if err := setup(sctx, js, cfg.NATS); err != nil {
		return nil, nil, closeOnSetupError(nc, cfg, fmt.Errorf("host: %s streams: %w", what, err))
	}
	return nc, js, nil
}

// dialNATS connects to cfg.NATSURL with cfg.NATSAuth, retrying while the
// server comes up.
func dialNATS(cfg Config, name string) (*nats.Conn, jetstream.JetStream, error) {
	opts, err := cfg.NATSOptions()
	if err != nil {
		return nil, nil, fmt.Errorf("host: connect nats %s: %w", redact.URLs(cfg.NATSURL), err)
	}
	opts = append(opts, nats.Name("council-"+name),
		nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second))
	nc, err := nats.Connect(cfg.NATSURL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("host: connect nats %s: %w", redact.URLs(cfg.NATSURL), redactErr(err))
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("host: jetstream: %w", err)
	}
	return nc, js, nil
}

// closeOnSetupError closes nc after err, the first request of a start
// failed, and returns err, or a permanent error when the server refused the
// credentials: retrying does not fix them.
func closeOnSetupError(nc *nats.Conn, cfg Config, err error) error {
	last := nc.LastError()
	nc.Close()
	if errors.Is(last, nats.ErrAuthorization) || errors.Is(last, nats.ErrAuthExpired) || errors.Is(last, nats.ErrAuthRevoked) {
		return fmt.Errorf("host: connect nats %s: %w", redact.URLs(cfg.NATSURL),
			council.Invalidf("the server refused the credentials (COUNCIL_NATS_*): %v", last))
	}
	return err
}

// NewCompleter returns the LLM client cfg describes.
func NewCompleter(cfg Config, log *slog.Logger) (*vllm.Client, error) {
	return vllm.New(cfg.LLMURL, cfg.LLMModel,
		vllm.WithAllowedModels(cfg.LLMModels...), vllm.WithTimeout(cfg.LLMTimeout),
		vllm.WithRetries(cfg.LLMRetries), vllm.WithAPIKey(cfg.LLMAPIKey), vllm.WithLogger(log),
		// The adapter's own HTTP client, its transport wrapped to tell the
		// span of each LLM call about its retries (telemetry.Completer).
		vllm.WithTransportWrap(telemetry.Transport))
}

// CompleterOr returns c, or, when c is nil, the LLM client cfg describes
// (NewCompleter): the functions' constructors take an injected Completer
// in tests of the wiring and build their own otherwise.
func CompleterOr(c council.Completer, cfg Config, log *slog.Logger) (council.Completer, error) {
	if c != nil {
		return c, nil
	}
	return NewCompleter(cfg, log)
}

// Function is what an Init builds once the function's dependencies answer.
type Function struct {
	// Handle handles the function's events.
	Handle Handler
	// Routes are extra routes (net/http patterns, e.g. "GET /status").
	Routes map[string]http.Handler
	// JetStream is the connection the jetstream transport consumes from;
	// nil is allowed with the http transport.
	JetStream jetstream.JetStream
	// Close releases what Init opened (may be nil).
	Close func()
	// Telemetry, when set, traces and counts every event Handle handles,
	// serves its metrics on GET /metrics and is shut down (flushed) when
	// Run returns. The function's own decorators (wire.go) use the same.
	Telemetry *telemetry.Telemetry
}

// Init builds a function. An error means a dependency is not there yet
// (NATS down, a bucket missing): Run retries with backoff. Init must not
// keep ctx beyond its return.
type Init func(ctx context.Context) (Function, error)

// Backoff bounds of Run's retries of Init.
const (
	initBackoffBase = 500 * time.Millisecond
	initBackoffMax  = 30 * time.Second
)

// Run runs function name until ctx ends. It listens on cfg.Port at once —
// liveness answers, readiness answers 503 and events are answered 503
// (retried by the broker) — then calls init, again and again with backoff
// while the function's dependencies are down, and serves what it built: the
// HTTP CloudEvents receiver and routes always and, when cfg.Transport is
// jetstream, a durable JetStream consumer named name for types. A function
// never crash-loops because NATS is not up yet.
func Run(ctx context.Context, cfg Config, name string, types []string, init Init, log *slog.Logger) error {
	var built atomic.Pointer[Function]
	handle := func(ctx context.Context, e event.Event) (*event.Event, error) {
		f := built.Load()
		if f == nil {
			return nil, council.Unavailablef("%s is starting: its dependencies do not answer yet", name)
		}
		return f.Handle(ctx, e)
	}
	routes := http.NewServeMux()
	lazyRoutes := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if built.Load() == nil {
			writeError(w, http.StatusServiceUnavailable, name+" is starting")
			return
		}
		routes.ServeHTTP(w, r)
	})
	opts, err := authOptions(ctx, cfg, lazyRoutes, log)
	if err != nil {
		return err
	}
	// GET /metrics: Prometheus text, open like /health (Knative's
	// queue-proxy convention; counts only, no data of any deliberation).
	metrics := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := built.Load()
		if f == nil {
			writeError(w, http.StatusServiceUnavailable, name+" is starting")
			return
		}
		f.Telemetry.MetricsHandler().ServeHTTP(w, r)
	})
	opts = append(opts, WithRoute("GET /metrics", metrics))
	srv, err := NewHTTPServer(cfg.Addr(), handle, append(opts, WithLogger(log),
		WithReadiness(func(context.Context) error {
			if built.Load() == nil {
				return errors.New("starting")
			}
			return nil
		}))...)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	running := 1
	go func() { errc <- srv.Serve(ctx) }()
	log.Info("function listening", "function", name, "transport", cfg.Transport, "addr", cfg.Addr())
	// abort stops the HTTP server after a failed start and returns err.
	abort := func(err error) error {
		cancel()
		if serr := <-errc; serr != nil && !errors.Is(serr, context.Canceled) {
			return errors.Join(err, serr)
		}
		return err
	}

	f, err := initWithRetry(ctx, name, init, log)
	if errors.Is(err, context.Canceled) {
		return abort(nil)
	}
	if err != nil {
		return abort(err)
	}
	if f.Close != nil {
		defer f.Close()
	}
	if f.Telemetry != nil {
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := f.Telemetry.Shutdown(sctx); err != nil {
				log.Warn("telemetry: flush at stop", "function", name, "error", err)
			}
		}()
		f.Handle = f.Telemetry.Handler(f.Handle)
	}
	for pattern, h := range f.Routes {
		routes.Handle(pattern, h)
	}
	if len(f.Routes) > 0 && cfg.QueryToken == "" {
		log.Warn("query routes are open: set COUNCIL_QUERY_TOKEN to require a bearer token", "function", name)
	}
	if cfg.Transport == TransportJetStream {
		if f.JetStream == nil {
			return abort(errors.New("host: transport jetstream needs a NATS connection"))
		}
		copts := []natsjs.Option{natsjs.WithLogger(log), natsjs.WithTopology(cfg.NATS)}
		if f.Telemetry != nil {
			copts = append(copts, natsjs.WithObserver(f.Telemetry))
		}
		c, err := natsjs.NewConsumer(f.JetStream, name, types, f.Handle, copts...)
		if err != nil {
			return abort(err)
		}
		running++
		go func() { errc <- c.Run(ctx) }()
	}
	built.Store(&f)
	log.Info("function ready", "function", name)
	var errs []error
	for ; running > 0; running-- {
		if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
		}
		cancel() // one stopped: stop the other
	}
	return errors.Join(errs...)
}

// authOptions are the server options of cfg's authentication: the query
// routes behind COUNCIL_QUERY_TOKEN when it is set, and the sender of
// events verified when COUNCIL_AUTH_OIDC_AUDIENCE is. The health routes stay
// open.
func authOptions(ctx context.Context, cfg Config, queries http.Handler, log *slog.Logger) ([]Option, error) {
	var opts []Option
	if cfg.QueryToken != "" {
		h, err := RequireToken(cfg.QueryToken, queries)
		if err != nil {
			return nil, err
		}
		queries = h
	}
	opts = append(opts, WithRoute("GET /", queries))
	if cfg.OIDC.Enabled() {
		v, err := NewTokenVerifier(ctx, cfg.OIDC)
		if err != nil {
			return nil, err
		}
		opts = append(opts, WithTokenVerifier(v))
		log.Info("events need an OIDC token", "audience", cfg.OIDC.Audience, "issuer", cfg.OIDC.Issuer,
			"jwks", redact.URL(cfg.OIDC.JWKSURL), "subjects", cfg.OIDC.Subjects)
	}
	return opts, nil
}

// initWithRetry calls init until it succeeds or ctx ends.
func initWithRetry(ctx context.Context, name string, init Init, log *slog.Logger) (Function, error) {
	wait := initBackoffBase
	for {
		f, err := init(ctx)
		if err == nil {
			if f.Handle == nil {
				return Function{}, fmt.Errorf("host: %s: init returned no handler", name)
			}
			return f, nil
		}
		if !council.Retryable(err) {
			// Permanent (the server refused the topology, a name is
			// invalid): retrying changes nothing, so the function stops
			// and its command exits non-zero instead of never becoming
			// ready.
			log.Error("function cannot start: permanent error, not retrying", "function", name, "error", err)
			return Function{}, fmt.Errorf("host: %s cannot start (permanent error, not retried): %w", name, err)
		}
		log.Warn("function not ready: retrying", "function", name, "in", wait, "error", err)
		select {
		case <-ctx.Done():
			return Function{}, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, initBackoffMax)
	}
}
