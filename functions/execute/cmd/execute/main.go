// Command execute serves the execute function (the coordinator): over HTTP
// (Knative, fan-out to K_SINK) and, with COUNCIL_TRANSPORT=jetstream, as a
// durable JetStream consumer that publishes its fan-out to the broker stream.
// It answers the queries of openapi.yaml on the same port. With
// COUNCIL_RAY_ADDRESS set it runs backend ray requests as Ray jobs of
// council-agent, found in COUNCIL_RAY_AGENT_DIR (default: next to this
// binary). With COUNCIL_LEGACY_SUBJECTS=true it also publishes the end of
// every deliberation on the old fleet's agent.response.* subjects (stream
// AGENT_RESPONSES, set up at start).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"council.dev/functions/execute"
	"council.dev/shared/adapters/legacy"
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
	// Everything that needs no server is built (and checked) before
	// listening; what needs NATS is built by init, retried until it answers.
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
	var sink council.Emitter
	if cfg.Sink != "" {
		if sink, err = host.NewSinkEmitter(cfg.Sink); err != nil {
			log.Error("emitter", "error", err)
			return 2
		}
	}
	init := func(ctx context.Context) (host.Function, error) {
		nc, js, err := host.ConnectNATS(ctx, cfg, "execute")
		if err != nil {
			return host.Function{}, err
		}
		fnOpts := opts
		if cfg.LegacySubjects {
			lp, err := legacyPublisher(ctx, cfg, js, log)
			if err != nil {
				nc.Close()
				return host.Function{}, err
			}
			fnOpts = append(slices.Clip(opts), execute.WithLegacy(lp))
		}
		fn, err := build(ctx, cfg, js, sink, fnOpts)
		if err != nil {
			nc.Close()
			return host.Function{}, err
		}
		return host.Function{Handle: fn.Handle, Routes: fn.Routes(), JetStream: js, Close: nc.Close}, nil
	}
	if err := host.Run(ctx, cfg, "execute", execute.Types(), init, log); err != nil {
		log.Error("serve", "error", err)
		return 1
	}
	return 0
}

// build makes the execute function over the KV bucket and, without a
// K_SINK, the JetStream broker.
func build(ctx context.Context, cfg host.Config, js jetstream.JetStream, sink council.Emitter, opts []execute.Option) (*execute.Function, error) {
	kv, err := js.KeyValue(ctx, cfg.NATS.Bucket)
	if err != nil {
		return nil, fmt.Errorf("kv bucket %s: %w", cfg.NATS.Bucket, err)
	}
	store, err := natsjs.NewStore(kv, natsjs.WithTopology(cfg.NATS))
	if err != nil {
		return nil, err
	}
	emitter := sink
	if emitter == nil {
		if emitter, err = natsjs.NewPublisher(js, natsjs.WithTopology(cfg.NATS)); err != nil {
			return nil, err
		}
	}
	return execute.New(store, emitter, opts...)
}

// legacyPublisher returns the publisher of the old fleet's subjects, its
// stream set up (COUNCIL_LEGACY_SUBJECTS).
func legacyPublisher(ctx context.Context, cfg host.Config, js jetstream.JetStream, log *slog.Logger) (*legacy.Publisher, error) {
	p, err := legacy.New(js, legacy.WithLogger(log), legacy.WithReplicas(cfg.NATS.Replicas))
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := p.Setup(sctx); err != nil {
		return nil, err
	}
	log.Info("legacy subjects enabled", "stream", legacy.DefaultStream)
	return p, nil
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
