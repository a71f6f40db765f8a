// Command execute serves the execute function (the coordinator): over HTTP
// (Knative, fan-out to K_SINK) and, with COUNCIL_TRANSPORT=jetstream, as a
// durable JetStream consumer that publishes its fan-out to the broker stream.
package main

import (
	"fmt"
	"os"

	"council.dev/functions/execute"
	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/council"
	"council.dev/shared/host"
)

func main() {
	cfg, err := host.LoadConfig(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "execute:", err)
		os.Exit(2)
	}
	log := host.NewLogger(cfg.LogLevel, os.Stderr)
	ctx, stop := host.SignalContext()
	defer stop()
	nc, js, err := host.ConnectNATS(ctx, cfg, "execute")
	if err != nil {
		log.Error("nats", "error", err)
		os.Exit(1)
	}
	defer nc.Close()
	kv, err := js.KeyValue(ctx, natsjs.DefaultTopology().Bucket)
	if err != nil {
		log.Error("kv bucket", "error", err)
		os.Exit(1)
	}
	store, err := natsjs.NewStore(kv, natsjs.WithLogger(log))
	if err != nil {
		log.Error("store", "error", err)
		os.Exit(2)
	}
	var emitter council.Emitter
	if cfg.Sink != "" {
		emitter, err = host.NewSinkEmitter(cfg.Sink)
	} else {
		emitter, err = natsjs.NewPublisher(js, natsjs.WithLogger(log))
	}
	if err != nil {
		log.Error("emitter", "error", err)
		os.Exit(2)
	}
	fn, err := execute.New(store, emitter, execute.WithSource(cfg.SourceFor("execute")), execute.WithLogger(log))
	if err != nil {
		log.Error("execute", "error", err)
		os.Exit(2)
	}
	if err := host.Serve(ctx, cfg, "execute", execute.Types, fn.Handle, js, log); err != nil {
		log.Error("serve", "error", err)
		os.Exit(1)
	}
}
