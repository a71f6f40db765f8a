// Command rayexecutor serves council's drop-in for the old Ray Executor:
// fleet.ray_executor.v1.RayExecutorService over h2c on PORT (Knative's
// port named h2c), plus /health/readiness and /health/liveness over
// HTTP/1.1. It listens at once; until NATS answers, calls answer
// UNAVAILABLE. The server is built by rayexecutor.FromConfig, as in the
// local stack.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"council.dev/functions/rayexecutor"
	"council.dev/shared/council"
	"council.dev/shared/host"
)

func main() { os.Exit(run()) }

func run() int {
	cfg, err := host.LoadConfig(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rayexecutor:", err)
		return 2
	}
	set, err := rayexecutor.LoadSettings(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rayexecutor:", err)
		return 2
	}
	log := host.NewLogger(cfg.LogLevel, os.Stderr)
	ctx, stop := host.SignalContext()
	defer stop()
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.Addr())
	if err != nil {
		log.Error("listen", "addr", cfg.Addr(), "error", err)
		return 1
	}
	h := rayexecutor.NewHandler(log)
	errc := make(chan error, 1)
	go func() { errc <- rayexecutor.Serve(ctx, ln, h) }()
	log.Info("rayexecutor listening (gRPC over h2c)", "addr", cfg.Addr())

	wait := 500 * time.Millisecond
	for {
		nc, js, err := host.ConnectNATS(ctx, cfg, "rayexecutor")
		if err == nil {
			srv, ferr := rayexecutor.FromConfig(ctx, cfg, set, rayexecutor.Deps{JS: js, Logger: log})
			if ferr == nil {
				defer nc.Close()
				h.Ready(rayexecutor.NewGRPCServer(srv, rayexecutor.RequireToken(cfg.QueryToken)...))
				log.Info("rayexecutor ready")
				break
			}
			nc.Close()
			err = ferr
		}
		if !council.Retryable(err) && !errors.Is(err, council.ErrUnavailable) {
			log.Error("rayexecutor cannot start: permanent error, not retrying", "error", err)
			stop()
			if serr := <-errc; serr != nil {
				log.Error("serve", "error", serr)
			}
			return 1
		}
		log.Warn("not ready: retrying", "in", wait, "error", err)
		select {
		case <-ctx.Done():
			if serr := <-errc; serr != nil {
				log.Error("serve", "error", serr)
				return 1
			}
			return 0
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
	if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
		log.Error("serve", "error", err)
		return 1
	}
	return 0
}
