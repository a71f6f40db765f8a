// Command execute serves the execute function (the coordinator): over HTTP
// (Knative, fan-out to K_SINK) and, with COUNCIL_TRANSPORT=jetstream, as a
// durable JetStream consumer that publishes its fan-out to the broker stream.
// It answers the queries of openapi.yaml on the same port. With
// COUNCIL_RAY_ADDRESS set it runs backend ray requests as Ray jobs of
// council-agent, found in COUNCIL_RAY_AGENT_DIR (default: next to this
// binary).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"council.dev/functions/execute"
	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/adapters/rayjobs"
	"council.dev/shared/council"
	"council.dev/shared/host"
)

func main() { os.Exit(run()) }

func run() int {
	cfg, err := host.LoadConfig(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "execute:", err)
		return 2
	}
	log := host.NewLogger(cfg.LogLevel, os.Stderr)
	ctx, stop := host.SignalContext()
	defer stop()
	nc, js, err := host.ConnectNATS(ctx, cfg, "execute")
	if err != nil {
		log.Error("nats", "error", err)
		return 1
	}
	defer nc.Close()
	kv, err := js.KeyValue(ctx, cfg.NATS.Bucket)
	if err != nil {
		log.Error("kv bucket", "error", err)
		return 1
	}
	store, err := natsjs.NewStore(kv, natsjs.WithLogger(log), natsjs.WithTopology(cfg.NATS))
	if err != nil {
		log.Error("store", "error", err)
		return 2
	}
	var emitter council.Emitter
	if cfg.Sink != "" {
		emitter, err = host.NewSinkEmitter(cfg.Sink)
	} else {
		emitter, err = natsjs.NewPublisher(js, natsjs.WithLogger(log), natsjs.WithTopology(cfg.NATS))
	}
	if err != nil {
		log.Error("emitter", "error", err)
		return 2
	}
	opts := []execute.Option{execute.WithSource(cfg.SourceFor("execute")), execute.WithLogger(log)}
	// execute calls no LLM itself; the client is there for GET /status,
	// which checks the server the generate and critique functions use.
	llm, err := host.NewCompleter(cfg, log)
	if err != nil {
		log.Error("llm client", "error", err)
		return 2
	}
	opts = append(opts, execute.WithCheck("llm", llm.Ping))
	if cfg.RayAddress != "" {
		ray, err := rayjobs.New(cfg.RayAddress, rayjobs.WithLogger(log))
		if err != nil {
			log.Error("ray", "error", err)
			return 2
		}
		dir := agentDir(cfg, log)
		opts = append(opts,
			execute.WithJobRunner(ray, execute.JobTemplate{WorkingDir: dir, Env: cfg.JobEnv()}),
			execute.WithCheck("ray", func(ctx context.Context) error {
				_, err := ray.Version(ctx)
				return err
			}))
		log.Info("backend ray enabled", "ray", cfg.RayAddress, "agent_dir", dir)
	}
	fn, err := execute.New(store, emitter, opts...)
	if err != nil {
		log.Error("execute", "error", err)
		return 2
	}
	var routes []host.Option
	for pattern, h := range fn.Routes() {
		routes = append(routes, host.WithRoute(pattern, h))
	}
	if err := host.Serve(ctx, cfg, "execute", execute.Types, fn.Handle, js, log, routes...); err != nil {
		log.Error("serve", "error", err)
		return 1
	}
	return 0
}

// agentDir is the working directory of the council-agent job:
// COUNCIL_RAY_AGENT_DIR, or the directory of this binary.
func agentDir(cfg host.Config, log *slog.Logger) string {
	if cfg.RayAgentDir != "" {
		return cfg.RayAgentDir
	}
	exe, err := os.Executable()
	if err != nil {
		log.Warn("cannot find the council-agent binary; set COUNCIL_RAY_AGENT_DIR", "error", err)
		return ""
	}
	dir := filepath.Dir(exe)
	if _, err := os.Stat(filepath.Join(dir, "council-agent")); err != nil {
		log.Warn("no council-agent next to execute; set COUNCIL_RAY_AGENT_DIR", "dir", dir)
	}
	return dir
}
