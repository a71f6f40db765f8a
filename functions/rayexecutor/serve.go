package rayexecutor

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Health routes of the HTTP/1.1 side of the port (Knative's probes).
const (
	RouteReadiness = "/health/readiness"
	RouteLiveness  = "/health/liveness"
)

// shutdownGrace is how long in-flight calls may take once Serve's context ends.
const shutdownGrace = 20 * time.Second

// Handler serves one port the way Knative's h2c port is used: gRPC over
// cleartext HTTP/2 (prior knowledge) and, over HTTP/1.1, the health routes.
// Until Ready is called, gRPC calls answer Unavailable ("starting"), which
// clients retry, and readiness answers 503: the port listens at once, the
// dependencies may come later.
type Handler struct {
	grpc atomic.Pointer[grpc.Server]
	log  *slog.Logger
}

// NewHandler returns a Handler that is not ready yet.
func NewHandler(log *slog.Logger) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{log: log}
}

// Ready serves g from now on.
func (h *Handler) Ready(g *grpc.Server) { h.grpc.Store(g) }

// NewGRPCServer returns a gRPC server with s registered, built with opts
// (RequireToken's, for example).
func NewGRPCServer(s *Server, opts ...grpc.ServerOption) *grpc.Server {
	g := grpc.NewServer(opts...)
	s.Register(g)
	return g
}

// RequireToken returns the server options that make every call carry the
// metadata "authorization: Bearer <token>" (COUNCIL_QUERY_TOKEN); a call
// without it fails with code Unauthenticated, which clients do not retry.
// An empty token returns no options: the calls stay open.
func RequireToken(token string) []grpc.ServerOption {
	if token == "" {
		return nil
	}
	want := []byte(token)
	check := func(ctx context.Context) error {
		md, _ := metadata.FromIncomingContext(ctx)
		for _, v := range md.Get("authorization") {
			scheme, tok, ok := strings.Cut(v, " ")
			if ok && strings.EqualFold(scheme, "Bearer") && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), want) == 1 {
				return nil
			}
		}
		return status.Error(codes.Unauthenticated, "a bearer token is required (authorization metadata, COUNCIL_QUERY_TOKEN)")
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := check(ctx); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := check(ss.Context()); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g := h.grpc.Load()
	if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
		if g == nil {
			// A trailers-only answer: status 14 (UNAVAILABLE), retried by clients.
			w.Header().Set("Content-Type", "application/grpc")
			w.Header().Set("Grpc-Status", "14")
			w.Header().Set("Grpc-Message", "rayexecutor is starting: its dependencies do not answer yet")
			w.WriteHeader(http.StatusOK)
			return
		}
		g.ServeHTTP(w, r)
		return
	}
	switch r.URL.Path {
	case RouteLiveness:
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("ok\n"))
	case RouteReadiness:
		if g == nil {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("ready\n"))
	default:
		http.Error(w, "this port serves gRPC (fleet.ray_executor.v1.RayExecutorService) over h2c", http.StatusNotFound)
	}
}

// Serve serves h on ln (h2c and HTTP/1.1) until ctx ends, then lets
// in-flight calls finish for a grace period.
func Serve(ctx context.Context, ln net.Listener, h *Handler) error {
	// HTTP/1.1 and HTTP/2 over cleartext with prior knowledge (h2c, what
	// gRPC clients and Knative's h2c port speak).
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           h,
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if g := h.grpc.Load(); g != nil {
		g.Stop()
	}
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}
