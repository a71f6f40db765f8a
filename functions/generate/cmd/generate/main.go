// Command generate serves the generate function: over HTTP (Knative) and,
// with COUNCIL_TRANSPORT=jetstream, as a durable JetStream consumer. It
// listens at once and becomes ready when NATS answers.
package main

import (
	"context"
	"fmt"
	"os"

	"council.dev/functions/generate"
	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/host"
)

func main() { os.Exit(run()) }

func run() int {
	cfg, err := host.LoadConfig(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "generate:", err)
		return 2
	}
	log := host.NewLogger(cfg.LogLevel, os.Stderr)
	ctx, stop := host.SignalContext()
	defer stop()
	llm, err := host.NewCompleter(cfg, log)
	if err != nil {
		log.Error("llm client", "error", err)
		return 2
	}
	init := func(ctx context.Context) (host.Function, error) {
		nc, js, err := host.ConnectNATS(ctx, cfg, "generate")
		if err != nil {
			return host.Function{}, err
		}
		tokens, err := natsjs.NewTokenPublisher(nc, natsjs.WithLogger(log), natsjs.WithTopology(cfg.NATS))
		if err != nil {
			nc.Close()
			return host.Function{}, err
		}
		fn, err := generate.New(llm, generate.WithTokenSink(tokens), generate.WithSource(cfg.SourceFor("generate")), generate.WithLogger(log))
		if err != nil {
			nc.Close()
			return host.Function{}, err
		}
		return host.Function{Handle: fn.Handle, JetStream: js, Close: nc.Close}, nil
	}
	if err := host.Run(ctx, cfg, "generate", generate.Types(), init, log); err != nil {
		log.Error("serve", "error", err)
		return 1
	}
	return 0
}
