// Command generate serves the generate function: over HTTP (Knative) and,
// with COUNCIL_TRANSPORT=jetstream, as a durable JetStream consumer. It
// listens at once and becomes ready when NATS answers. The function is
// built by generate.FromConfig, as in the local stack.
// With -setup it creates or updates council's NATS topology once and exits
// (host.SetupNATS, as `council setup`: the council-setup Job), for
// functions started with COUNCIL_NATS_SETUP=bind.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"council.dev/functions/generate"
	"council.dev/shared/host"
)

func main() { os.Exit(run()) }

func run() int {
	setup := flag.Bool("setup", false, "create or update council's NATS topology (COUNCIL_NATS_*) and exit, as `council setup` does")
	flag.Parse()
	cfg, err := host.LoadConfig(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "generate:", err)
		return 2
	}
	log := host.NewLogger(cfg.LogLevel, os.Stderr)
	ctx, stop := host.SignalContext()
	defer stop()
	if *setup {
		// The council-setup Job: the topology, once, for functions
		// started with COUNCIL_NATS_SETUP=bind.
		return host.RunSetup(ctx, cfg, "generate", os.Stdout, log)
	}
	llm, err := host.NewCompleter(cfg, log)
	if err != nil {
		log.Error("llm client", "error", err)
		return 2
	}
	// Traces (OTEL_*) and metrics (GET /metrics); host.Run flushes them
	// when the function stops.
	tel, err := host.NewTelemetry(ctx, cfg, "generate")
	if err != nil {
		log.Error("telemetry", "error", err)
		return 2
	}
	init := func(ctx context.Context) (host.Function, error) {
		nc, js, err := host.ConnectNATS(ctx, cfg, "generate")
		if err != nil {
			return host.Function{}, err
		}
		fn, err := generate.FromConfig(cfg, generate.Deps{NC: nc, Logger: log, Completer: llm, Telemetry: tel})
		if err != nil {
			nc.Close()
			return host.Function{}, err
		}
		return host.Function{Handle: fn.Handle, JetStream: js, Close: nc.Close, Telemetry: tel}, nil
	}
	if err := host.Run(ctx, cfg, "generate", generate.Types(), init, log); err != nil {
		log.Error("serve", "error", err)
		return 1
	}
	return 0
}
