// Command eventsink is the stand-in orchestrator of the cluster checks
// (test/cluster_test.go): a CloudEvents receiver that records every event a
// Trigger delivers to it, in binary or structured mode, and answers 202.
// It is test infrastructure only.
//
//	POST /         record one CloudEvent; 202, or 400 for a request that is not one
//	GET  /events   every event recorded so far, oldest first, as a JSON array
//	GET  /healthz  200 once listening
//
// It listens on $PORT (8080 when unset) and logs one JSON line per event.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "eventsink:", err)
		os.Exit(1)
	}
}

func run() error {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	s := newSink(log, time.Now)
	srv := &http.Server{
		Addr:              net.JoinHostPort("", port),
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("listening", "addr", srv.Addr)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
