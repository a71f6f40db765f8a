// Command execute serves the execute function (the coordinator): over HTTP
// (Knative, fan-out to K_SINK) and, with COUNCIL_TRANSPORT=jetstream, as a
// durable JetStream consumer that publishes its fan-out to the broker stream.
// It answers the queries of events/openapi.yaml on the same port. With
// COUNCIL_RAY_ADDRESS set it runs backend ray requests as Ray jobs of
// council-agent, found in COUNCIL_RAY_AGENT_DIR (default: next to this
// binary). With COUNCIL_LEGACY_SUBJECTS=true it also publishes the end of
// every deliberation on the old fleet's agent.response.* subjects (stream
// AGENT_RESPONSES, set up at start). The function is built by
// execute.FromConfig, as in the local stack.
// With -setup it creates or updates council's NATS topology once and exits
// (host.SetupNATS, as `council setup`: the council-setup Job), for
// functions started with COUNCIL_NATS_SETUP=bind.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"council.dev/functions/execute"
	"council.dev/shared/host"
)

func main() { os.Exit(run()) }

func run() int {
	setup := flag.Bool("setup", false, "create or update council's NATS topology (COUNCIL_NATS_*) and exit, as `council setup` does")
	flag.Parse()
	cfg, err := host.LoadConfig(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "execute:", err)
		return 2
	}
	log := host.NewLogger(cfg.LogLevel, os.Stderr)
	ctx, stop := host.SignalContext()
	defer stop()
	if *setup {
		// The council-setup Job: the topology, once, for functions
		// started with COUNCIL_NATS_SETUP=bind.
		return host.RunSetup(ctx, cfg, "execute", os.Stdout, log)
	}
	// execute calls no LLM itself; the client is there for GET /status,
	// which checks the server the generate and critique functions use.
	llm, err := host.NewCompleter(cfg, log)
	if err != nil {
		log.Error("llm client", "error", err)
		return 2
	}
	// Traces (OTEL_*) and metrics (GET /metrics); host.Run flushes them
	// when the function stops.
	tel, err := host.NewTelemetry(ctx, cfg, "execute")
	if err != nil {
		log.Error("telemetry", "error", err)
		return 2
	}
	// What needs NATS is built by init, retried until NATS answers.
	init := func(ctx context.Context) (host.Function, error) {
		nc, js, err := host.ConnectNATS(ctx, cfg, "execute")
		if err != nil {
			return host.Function{}, err
		}
		fn, err := execute.FromConfig(ctx, cfg, execute.Deps{JS: js, Logger: log, Completer: llm, Telemetry: tel})
		if err != nil {
			nc.Close()
			return host.Function{}, err
		}
		return host.Function{Handle: fn.Handle, Routes: fn.Routes(), JetStream: js, Close: nc.Close, Telemetry: tel}, nil
	}
	if err := host.Run(ctx, cfg, "execute", execute.Types(), init, log); err != nil {
		log.Error("serve", "error", err)
		return 1
	}
	return 0
}
