package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"council.dev/events"
	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/council"
)

// Handler handles one event and returns the reply event, or nil when there is
// none. It is the JetStream consumer's handler type (one type serves both
// transports). Errors are classified with the council sentinels (and
// ErrRateLimited); StatusFor says what each one becomes over HTTP. Over
// HTTP, ctx is cancelled when the sender hangs up or when the shutdown grace
// runs out.
type Handler = natsjs.Handler

// Server timeouts that are not options: a client that cannot send its
// headers in 10s or its body in a minute is not a broker worth waiting for.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = time.Minute
	idleTimeout       = 2 * time.Minute
)

// Defaults for the options.
const (
	// DefaultWriteTimeout outlasts an LLM call with its retries.
	DefaultWriteTimeout = 15 * time.Minute
	// DefaultMaxBodyBytes bounds the body of one event: the largest data
	// the functions accept (events.MaxDataBytes) and its envelope.
	DefaultMaxBodyBytes int64 = events.MaxDataBytes + 64<<10
	// DefaultShutdownGrace is how long in-flight events may take to finish
	// once the drain starts.
	DefaultShutdownGrace = 30 * time.Second
)

// HTTPServer serves a Handler as a CloudEvents receiver, plus the health
// routes and any routes added with WithRoute. Create it with NewHTTPServer
// and run it once with Serve or ServeListener.
type HTTPServer struct {
	addr      string
	handler   Handler
	logger    *slog.Logger
	readiness []func(context.Context) error
	routes    []route
	verifier  *TokenVerifier

	writeTimeout  time.Duration
	maxBodyBytes  int64
	drainDelay    time.Duration
	shutdownGrace time.Duration

	srv      *http.Server
	draining atomic.Bool
	started  atomic.Bool
}

type route struct {
	pattern string
	handler http.Handler
}

// Option configures an HTTPServer; an option with an invalid value makes
// NewHTTPServer fail.
type Option func(*HTTPServer) error

// WithLogger sets the logger for the per-event lines and the lifecycle; the
// default discards.
func WithLogger(l *slog.Logger) Option {
	return func(s *HTTPServer) error {
		if l == nil {
			return errors.New("WithLogger: nil logger")
		}
		s.logger = l
		return nil
	}
}

// WithReadiness adds a check to GET /health/readiness: while it returns an
// error the route answers 503 with that error. Checks run on every probe, so
// they must be cheap.
func WithReadiness(check func(ctx context.Context) error) Option {
	return func(s *HTTPServer) error {
		if check == nil {
			return errors.New("WithReadiness: nil check")
		}
		s.readiness = append(s.readiness, check)
		return nil
	}
}

// WithRoute adds a route to the server's mux, with a net/http pattern such as
// "GET /deliberations/{id}". A pattern that conflicts with another route makes
// NewHTTPServer fail.
func WithRoute(pattern string, h http.Handler) Option {
	return func(s *HTTPServer) error {
		if h == nil {
			return fmt.Errorf("WithRoute %q: nil handler", pattern)
		}
		s.routes = append(s.routes, route{pattern: pattern, handler: h})
		return nil
	}
}

// WithWriteTimeout sets the server's WriteTimeout, which bounds how long one
// event may take; default DefaultWriteTimeout.
func WithWriteTimeout(d time.Duration) Option {
	return func(s *HTTPServer) error {
		if d <= 0 {
			return fmt.Errorf("WithWriteTimeout: %v is not positive", d)
		}
		s.writeTimeout = d
		return nil
	}
}

// WithMaxBodyBytes bounds the body of one event; a larger one is answered
// 413. Default DefaultMaxBodyBytes.
func WithMaxBodyBytes(n int64) Option {
	return func(s *HTTPServer) error {
		if n <= 0 {
			return fmt.Errorf("WithMaxBodyBytes: %d is not positive", n)
		}
		s.maxBodyBytes = n
		return nil
	}
}

// WithDrainDelay sets how long Serve keeps accepting requests, with readiness
// answering 503, before it stops listening. The default is 0: under Knative
// the queue-proxy drains before the container gets SIGTERM; behind a plain
// Kubernetes Service a few seconds let the endpoints update.
func WithDrainDelay(d time.Duration) Option {
	return func(s *HTTPServer) error {
		if d < 0 {
			return fmt.Errorf("WithDrainDelay: %v is negative", d)
		}
		s.drainDelay = d
		return nil
	}
}

// WithShutdownGrace sets how long in-flight events may run once the server
// stops listening; default DefaultShutdownGrace. After it, their contexts are
// cancelled and their connections closed.
func WithShutdownGrace(d time.Duration) Option {
	return func(s *HTTPServer) error {
		if d <= 0 {
			return fmt.Errorf("WithShutdownGrace: %v is not positive", d)
		}
		s.shutdownGrace = d
		return nil
	}
}

// NewHTTPServer returns a server that will listen on addr (":8080") and
// pass each CloudEvent to h. It does not listen yet; Serve does.
func NewHTTPServer(addr string, h Handler, opts ...Option) (*HTTPServer, error) {
	if h == nil {
		return nil, fmt.Errorf("host: new server: %w", council.Invalidf("nil handler"))
	}
	s := &HTTPServer{
		addr:          addr,
		handler:       h,
		logger:        slog.New(slog.DiscardHandler),
		writeTimeout:  DefaultWriteTimeout,
		maxBodyBytes:  DefaultMaxBodyBytes,
		shutdownGrace: DefaultShutdownGrace,
	}
	for _, opt := range opts {
		if err := opt(s); err != nil {
			return nil, fmt.Errorf("host: new server: %w", council.Invalidf("%v", err))
		}
	}
	mux := http.NewServeMux()
	routes := append([]route{
		{"POST /{$}", http.HandlerFunc(s.serveEvent)},
		{"GET /health/readiness", http.HandlerFunc(s.serveReadiness)},
		{"GET /health/liveness", http.HandlerFunc(serveLiveness)},
	}, s.routes...)
	for _, r := range routes {
		if err := handle(mux, r); err != nil {
			return nil, fmt.Errorf("host: new server: %w", err)
		}
	}
	s.srv = &http.Server{
		Addr:              addr,
		Handler:           mux,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      s.writeTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// handle registers r, turning the mux's panic on a bad or conflicting
// pattern into an error.
func handle(mux *http.ServeMux, r route) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = council.Invalidf("route %q: %v", r.pattern, p)
		}
	}()
	mux.Handle(r.pattern, r.handler)
	return nil
}

// Handler returns the server's routes, for tests and for embedding in
// another server; Serve uses the same handler.
func (s *HTTPServer) Handler() http.Handler { return s.srv.Handler }

// Serve listens on the server's address and serves until ctx is cancelled,
// then drains: readiness answers 503, the drain delay passes, the listener
// closes and in-flight events get the shutdown grace to finish. It returns
// nil after a clean drain, and an error when it cannot listen, when serving
// fails, or when in-flight events outlast the grace.
func (s *HTTPServer) Serve(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.addr)
	if err != nil {
		return fmt.Errorf("host: listen %s: %w", s.addr, err)
	}
	return s.ServeListener(ctx, ln)
}

// ServeListener is Serve on a listener the caller opened; it closes ln.
func (s *HTTPServer) ServeListener(ctx context.Context, ln net.Listener) error {
	if !s.started.CompareAndSwap(false, true) {
		_ = ln.Close()
		return errors.New("host: serve: server already started")
	}
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(ln) }()
	s.logger.Info("serving", "addr", ln.Addr().String())

	select {
	case err := <-errc:
		return fmt.Errorf("host: serve: %w", err)
	case <-ctx.Done():
	}

	s.draining.Store(true)
	s.logger.Info("draining", "drain_delay", s.drainDelay, "grace", s.shutdownGrace)
	if s.drainDelay > 0 {
		t := time.NewTimer(s.drainDelay)
		select {
		case <-t.C:
		case err := <-errc:
			t.Stop()
			return fmt.Errorf("host: serve: %w", err)
		}
	}

	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.shutdownGrace)
	defer cancel()
	if err := s.srv.Shutdown(shutdownCtx); err != nil {
		// Close cancels the contexts of the events still running; Serve then
		// returns http.ErrServerClosed, and the Shutdown error says more.
		_ = s.srv.Close()
		<-errc //nolint:errcheck // only waits for Serve to return
		return fmt.Errorf("host: shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("host: serve: %w", err)
	}
	s.logger.Info("stopped")
	return nil
}

func (s *HTTPServer) serveReadiness(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		http.Error(w, "draining", http.StatusServiceUnavailable)
		return
	}
	for _, check := range s.readiness {
		if err := check(r.Context()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok"))
}

func serveLiveness(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok"))
}
