package execute

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"council.dev/shared/adapters/legacy"
	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/adapters/rayjobs"
	"council.dev/shared/adapters/telemetry"
	"council.dev/shared/council"
	"council.dev/shared/host"
)

// Deps are what the execute function is built over besides its
// configuration.
type Deps struct {
	// JS is the JetStream of the state bucket and, without a K_SINK, of the
	// broker stream execute publishes its fan-out to.
	JS jetstream.JetStream
	// Logger logs; nil discards.
	Logger *slog.Logger
	// Completer is the LLM the other functions use, checked by GET /status
	// when it has a Ping method; nil builds the client cfg describes.
	Completer council.Completer
	// Telemetry traces the store operations and the events sent, and
	// counts the deliberations that end (host.NewTelemetry); nil: none.
	Telemetry *telemetry.Telemetry
}

// FromConfig builds the execute function the way its command runs it, from
// cfg: the state store on cfg.NATS's bucket; the fan-out to cfg.Sink over
// HTTP (Knative) or, without one, published to the broker stream; the
// checks of GET /status (NATS, the LLM server, Ray); with cfg.RayAddress,
// backend ray as Ray jobs of council-agent (in cfg.RayAgentDir, else next to
// this binary) with cfg.JobEnv(); with cfg.LegacySubjects, the old fleet's
// subjects (their stream set up here). The command (cmd/execute) and the
// local stack (cli/stack) both build it here.
func FromConfig(ctx context.Context, cfg host.Config, d Deps) (*Function, error) {
	if d.JS == nil {
		return nil, errors.New("execute: from config: a JetStream is required (state bucket)")
	}
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := []Option{WithSource(cfg.SourceFor("execute")), WithLogger(log), WithModels(cfg.LLMModels...)}
	llm, err := host.CompleterOr(d.Completer, cfg, log)
	if err != nil {
		return nil, err
	}
	if p, ok := llm.(interface{ Ping(context.Context) error }); ok {
		opts = append(opts, WithCheck("llm", p.Ping))
	}
	if cfg.RayAddress != "" {
		ray, err := rayjobs.New(cfg.RayAddress, rayjobs.WithLogger(log), rayjobs.WithHeaders(cfg.RayHeaders))
		if err != nil {
			return nil, err
		}
		if cfg.LLMAPIKey != "" && cfg.RayJobLLMAPIKeyFile == "" {
			// The key never goes into a job's environment (Ray shows it).
			log.Warn("the council-agent Ray job gets no LLM API key: set COUNCIL_RAY_JOB_LLM_API_KEY_FILE to where the Ray cluster keeps it")
		}
		dir := agentDir(cfg, log)
		opts = append(opts,
			WithJobRunner(ray, JobTemplate{WorkingDir: dir, Env: cfg.JobEnv()}),
			WithCheck("ray", func(ctx context.Context) error {
				_, err := ray.Version(ctx)
				return err
			}))
		log.Info("backend ray enabled", "ray", cfg.RayAddress, "agent_dir", dir)
		if cfg.RayPool > 0 {
			pc := cfg.PoolConfig()
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			var err error
			if cfg.BindNATS() {
				err = natsjs.BindPool(sctx, d.JS, pc)
			} else {
				_, err = natsjs.SetupPool(sctx, d.JS, pc)
			}
			cancel()
			if err != nil {
				return nil, fmt.Errorf("execute: %w", err)
			}
			q, err := natsjs.NewPoolQueue(d.JS, pc)
			if err != nil {
				return nil, err
			}
			opts = append(opts, WithRayPool(RayPool{
				Queue: q, Min: cfg.RayPool, Max: cfg.RayPoolMax, Workers: cfg.RayPoolWorkers, AckWait: cfg.RayPoolAckWait,
			}))
			log.Info("ray pool enabled", "min_jobs", cfg.RayPool, "max_jobs", cfg.RayPoolMax, "workers_per_job", cfg.RayPoolWorkers)
		}
	}
	if cfg.LegacySubjects {
		lp, err := legacy.New(d.JS, legacy.WithLogger(log), legacy.WithReplicas(cfg.NATS.Replicas))
		if err != nil {
			return nil, err
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if cfg.BindNATS() {
			err = natsjs.BindStream(sctx, d.JS, legacy.DefaultStream, "legacy subjects")
		} else {
			err = lp.Setup(sctx)
		}
		if err != nil {
			return nil, err
		}
		log.Info("legacy subjects enabled", "stream", legacy.DefaultStream)
		opts = append(opts, WithLegacy(lp))
	}
	store, err := natsjs.OpenStore(ctx, d.JS, natsjs.WithTopology(cfg.NATS), natsjs.WithLogger(log))
	if err != nil {
		return nil, fmt.Errorf("execute: %w", err)
	}
	// Once per state bucket (an upgrade from before the index): index the
	// deliberations already running, or the sweep would never see them.
	// A topology set up once (bind) was indexed by its setup
	// (host.SetupNATS): a start then skips the read.
	if !cfg.BindNATS() {
		if err := store.EnsureIndexed(ctx); err != nil {
			return nil, fmt.Errorf("execute: %w", err)
		}
	}
	// GET /deliberations/{id}/events: the state bucket and the token
	// stream, on every transport.
	feed, err := natsjs.NewTokenFeed(d.JS, natsjs.WithTopology(cfg.NATS))
	if err != nil {
		return nil, fmt.Errorf("execute: %w", err)
	}
	opts = append(opts, WithLive(store, feed))
	var emitter council.Emitter
	if cfg.Sink != "" {
		// Knative: the broker is Knative's; deadlines are the sweep's
		// (PingSource), as no consumer reads council's own stream.
		if emitter, err = host.NewSinkEmitter(cfg.Sink); err != nil {
			return nil, err
		}
	} else {
		popts := []natsjs.Option{natsjs.WithTopology(cfg.NATS)}
		if d.Telemetry != nil {
			popts = append(popts, natsjs.WithObserver(d.Telemetry))
		}
		p, err := natsjs.NewPublisher(d.JS, popts...)
		if err != nil {
			return nil, err
		}
		// Each deadline a durable timer of the broker stream. No size
		// check against the broker's max_payload: what is larger goes by
		// reference (the claim check).
		emitter = p
		opts = append(opts, WithTimer(d.Telemetry.Timer(p)))
	}
	// Traced: each store operation, each event sent (which carries the
	// trace of the event that caused it on), each deliberation's end.
	f, err := New(d.Telemetry.Store(store), d.Telemetry.Emitter(emitter), opts...)
	if err != nil {
		return nil, err
	}
	if f.pool != nil {
		// Start the pool's jobs now, not at the first sweep; Ray being
		// down is no reason not to start (the sweep tries again).
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := f.EnsurePool(pctx); err != nil {
			log.Warn("ray pool not started yet", "error", err)
		}
		cancel()
	}
	return f, nil
}

// agentDir is the working directory of the council-agent job:
// COUNCIL_RAY_AGENT_DIR, or the directory of the running binary.
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
