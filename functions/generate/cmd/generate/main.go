// Command generate serves the generate function: over HTTP (Knative) and,
// with COUNCIL_TRANSPORT=jetstream, as a durable JetStream consumer.
package main

import (
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
	nc, js, err := host.ConnectNATS(ctx, cfg, "generate")
	if err != nil {
		log.Error("nats", "error", err)
		return 1
	}
	defer nc.Close()
	tokens, err := natsjs.NewTokenPublisher(nc, natsjs.WithLogger(log), natsjs.WithTopology(cfg.NATS))
	if err != nil {
		log.Error("token publisher", "error", err)
		return 2
	}
	fn, err := generate.New(llm, generate.WithTokenSink(tokens), generate.WithSource(cfg.SourceFor("generate")), generate.WithLogger(log))
	if err != nil {
		log.Error("generate", "error", err)
		return 2
	}
	if err := host.Serve(ctx, cfg, "generate", generate.Types, fn.Handle, js, log); err != nil {
		log.Error("serve", "error", err)
		return 1
	}
	return 0
}
