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

func main() {
	cfg, err := host.LoadConfig(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "generate:", err)
		os.Exit(2)
	}
	log := host.NewLogger(cfg.LogLevel, os.Stderr)
	ctx, stop := host.SignalContext()
	defer stop()
	llm, err := host.NewCompleter(cfg, log)
	if err != nil {
		log.Error("llm client", "error", err)
		os.Exit(2)
	}
	nc, js, err := host.ConnectNATS(ctx, cfg, "generate")
	if err != nil {
		log.Error("nats", "error", err)
		os.Exit(1)
	}
	defer nc.Close()
	tokens, err := natsjs.NewTokenPublisher(nc, natsjs.WithLogger(log))
	if err != nil {
		log.Error("token publisher", "error", err)
		os.Exit(2)
	}
	fn, err := generate.New(llm, generate.WithTokenSink(tokens), generate.WithSource(cfg.SourceFor("generate")), generate.WithLogger(log))
	if err != nil {
		log.Error("generate", "error", err)
		os.Exit(2)
	}
	if err := host.Serve(ctx, cfg, "generate", generate.Types, fn.Handle, js, log); err != nil {
		log.Error("serve", "error", err)
		os.Exit(1)
	}
}
