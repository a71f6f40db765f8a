// Command critique serves the critique function: over HTTP (Knative) and,
// with COUNCIL_TRANSPORT=jetstream, as a durable JetStream consumer.
package main

import (
	"fmt"
	"os"

	"github.com/nats-io/nats.go/jetstream"

	"council.dev/functions/critique"
	"council.dev/shared/host"
)

func main() { os.Exit(run()) }

func run() int {
	cfg, err := host.LoadConfig(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "critique:", err)
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
	fn, err := critique.New(llm, critique.WithSource(cfg.SourceFor("critique")), critique.WithLogger(log))
	if err != nil {
		log.Error("critique", "error", err)
		return 2
	}
	var js jetstream.JetStream
	if cfg.Transport == host.TransportJetStream {
		nc, j, err := host.ConnectNATS(ctx, cfg, "critique")
		if err != nil {
			log.Error("nats", "error", err)
			return 1
		}
		defer nc.Close()
		js = j
	}
	if err := host.Serve(ctx, cfg, "critique", critique.Types, fn.Handle, js, log); err != nil {
		log.Error("serve", "error", err)
		return 1
	}
	return 0
}
