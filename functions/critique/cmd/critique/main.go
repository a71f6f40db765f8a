// Command critique serves the critique function: over HTTP (Knative) and,
// with COUNCIL_TRANSPORT=jetstream, as a durable JetStream consumer. The
// function is built by critique.FromConfig, as in the local stack.
// With -setup it creates or updates council's NATS topology once and exits
// (host.SetupNATS, as `council setup`: the council-setup Job), for
// functions started with COUNCIL_NATS_SETUP=bind.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"council.dev/functions/critique"
	"council.dev/shared/host"
)

func main() { os.Exit(run()) }

func run() int {
	setup := flag.Bool("setup", false, "create or update council's NATS topology (COUNCIL_NATS_*) and exit, as `council setup` does")
	flag.Parse()
	cfg, err := host.LoadConfig(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "critique:", err)
		return 2
	}
	log := host.NewLogger(cfg.LogLevel, os.Stderr)
	ctx, stop := host.SignalContext()
	defer stop()
	if *setup {
		// The council-setup Job: the topology, once, for functions
		// started with COUNCIL_NATS_SETUP=bind.
		return host.RunSetup(ctx, cfg, "critique", os.Stdout, log)
	}
	// Traces (OTEL_*) and metrics (GET /metrics); host.Run flushes them
	// when the function stops.
	tel, err := host.NewTelemetry(ctx, cfg, "critique")
	if err != nil {
		log.Error("telemetry", "error", err)
		return 2
	}
	fn, err := critique.FromConfig(cfg, critique.Deps{Logger: log, Telemetry: tel})
	if err != nil {
		log.Error("critique", "error", err)
		return 2
	}
	init := func(ctx context.Context) (host.Function, error) {
		if cfg.Transport != host.TransportJetStream {
			return host.Function{Handle: fn.Handle, Telemetry: tel}, nil
		}
		nc, js, err := host.ConnectNATS(ctx, cfg, "critique")
		if err != nil {
			return host.Function{}, err
		}
		// On NATS: with work claims, so a duplicated request makes no
		// second LLM call.
		fn, err := critique.FromConfig(cfg, critique.Deps{Logger: log, Telemetry: tel, NC: nc})
		if err != nil {
			nc.Close()
			return host.Function{}, err
		}
		return host.Function{Handle: fn.Handle, JetStream: js, Close: nc.Close, Telemetry: tel}, nil
	}
	if err := host.Run(ctx, cfg, "critique", critique.Types(), init, log); err != nil {
		log.Error("serve", "error", err)
		return 1
	}
	return 0
}
