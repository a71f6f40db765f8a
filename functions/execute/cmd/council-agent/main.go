// Command council-agent is the entrypoint of the Ray job that runs a
// backend ray deliberation. execute submits it with the deliberation id in
// its environment; it reads the task from the stored state, runs the
// deliberation in-process (agents in parallel against the LLM server),
// records the outcome in the deliberation state execute owns (JetStream KV,
// compare-and-set) and emits the same deliberation.completed or
// deliberation.failed event execute would.
//
// With -pool it is the warm pool's long-lived job instead (ADR 10): it runs
// the deliberations execute puts on the pool's work queue, at most -workers
// at once, reporting progress while each runs (a worker silent for
// -ack-wait loses its deliberation to another), until it is stopped.
//
// Environment: COUNCIL_DELIBERATION_ID (a job started by hand may carry the
// request instead: COUNCIL_REQUEST, base64 of the deliberation.requested
// event, structured JSON, or COUNCIL_REQUEST_FILE, a file holding it,
// relative to the working directory), and the host configuration:
// COUNCIL_NATS_URL, COUNCIL_LLM_URL, COUNCIL_LLM_MODEL, the other
// COUNCIL_LLM_* variables and COUNCIL_LEGACY_SUBJECTS (also publish the
// outcome on the old fleet's agent.response.* subjects), see
// docs/CONVENTIONS.md.
//
// Exit status: 0 completed, 1 failed (or stopped, or the state could not be
// written), 2 bad input. The last line it writes is
// "council-agent: deliberation <id> <completed|failed>: <reason>".
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/functions/execute"
	"council.dev/shared/adapters/legacy"
	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/council"
	"council.dev/shared/host"
)

// Exit statuses.
const (
	exitCompleted = 0
	exitFailed    = 1
	exitBadInput  = 2
)

func main() {
	fs := flag.NewFlagSet("council-agent", flag.ContinueOnError)
	pool := fs.Bool(strings.TrimPrefix(execute.PoolFlag, "-"), false, "run as the warm pool's workers")
	workers := fs.Int("workers", 8, "with -pool: deliberations run at once")
	ackWait := fs.Duration("ack-wait", natsjs.DefaultPoolAckWait, "with -pool: how long a worker may stay silent")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(exitBadInput)
	}
	if *pool {
		os.Exit(runPool(*workers, *ackWait))
	}
	os.Exit(run())
}

// runPool runs the pool's workers until the job is stopped.
func runPool(workers int, ackWait time.Duration) int {
	end := func(code int, line string) int {
		fmt.Fprintln(os.Stderr, "council-agent: pool "+line)
		return code
	}
	if workers < 1 || ackWait < time.Second {
		return end(exitBadInput, fmt.Sprintf("workers %d, ack-wait %s: want at least 1 and 1s", workers, ackWait))
	}
	cfg, err := host.LoadConfig(os.Getenv)
	if err != nil {
		return end(exitBadInput, "bad configuration: "+err.Error())
	}
	log := host.NewLogger(cfg.LogLevel, os.Stderr).With("function", "council-agent", "mode", "pool")
	ctx, stop := host.SignalContext()
	defer stop()
	agent, nc, js, err := newAgent(ctx, cfg, log)
	if err != nil {
		return end(exitFailed, err.Error())
	}
	defer nc.Close()
	cons, err := natsjs.SetupPool(ctx, js, natsjs.PoolConfig{AckWait: ackWait, Replicas: cfg.NATS.Replicas})
	if err != nil {
		return end(exitFailed, "work queue: "+err.Error())
	}
	log.Info("pool workers ready", "workers", workers, "ack_wait", ackWait)
	w := &natsjs.PoolWorkers{Consumer: cons, AckWait: ackWait, Max: workers, Log: log}
	_ = w.Run(ctx, func(ctx context.Context, id string) error {
		start := time.Now()
		err := agent.RunPooled(ctx, id)
		_ = nc.Flush() // token messages go out without acks
		log.Info("pool run done", "deliberation", id, "error", err, "duration", time.Since(start))
		return err
	})
	return end(exitCompleted, "stopped")
}

// newAgent connects to NATS and builds the agent cfg describes.
func newAgent(ctx context.Context, cfg host.Config, log *slog.Logger) (*execute.Agent, *nats.Conn, jetstream.JetStream, error) {
	nc, js, err := host.ConnectNATS(ctx, cfg, "council-agent")
	if err != nil {
		return nil, nil, nil, fmt.Errorf("nats: %w", err)
	}
	fail := func(what string, err error) (*execute.Agent, *nats.Conn, jetstream.JetStream, error) {
		nc.Close()
		return nil, nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	store, err := natsjs.OpenStore(ctx, js, natsjs.WithLogger(log), natsjs.WithTopology(cfg.NATS))
	if err != nil {
		return fail("store", err)
	}
	publisher, err := natsjs.NewPublisher(js, natsjs.WithLogger(log), natsjs.WithTopology(cfg.NATS))
	if err != nil {
		return fail("publisher", err)
	}
	tokens, err := natsjs.NewTokenPublisher(nc, natsjs.WithTopology(cfg.NATS))
	if err != nil {
		return fail("token publisher", err)
	}
	llm, err := host.NewCompleter(cfg, log)
	if err != nil {
		return fail("llm client", err)
	}
	agent := &execute.Agent{
		Store: store, Emitter: publisher, LLM: llm, Tokens: tokens,
		Source: cfg.SourceFor("council-agent"), Log: log,
	}
	if cfg.LegacySubjects {
		lp, err := legacy.New(js, legacy.WithLogger(log), legacy.WithReplicas(cfg.NATS.Replicas))
		if err != nil {
			return fail("legacy publisher", err)
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = lp.Setup(sctx)
		cancel()
		if err != nil {
			return fail("legacy stream", err)
		}
		agent.Legacy = lp
	}
	return agent, nc, js, nil
}

func run() int {
	start := time.Now()
	id := os.Getenv(execute.EnvDeliberationID)
	if id == "" {
		id = "unknown"
	}
	end := func(code int, line string) int {
		fmt.Fprintln(os.Stderr, "council-agent: "+line)
		return code
	}
	fail := func(code int, what string, err error) int {
		return end(code, fmt.Sprintf("deliberation %s failed: %s: %v", id, what, err))
	}

	cfg, err := host.LoadConfig(os.Getenv)
	if err != nil {
		return fail(exitBadInput, "bad configuration", err)
	}
	log := host.NewLogger(cfg.LogLevel, os.Stderr).With("function", "council-agent")
	wd, err := os.Getwd()
	if err != nil {
		return fail(exitBadInput, "working directory", err)
	}
	rid, task, err := execute.JobRequest(os.Getenv, wd)
	if err != nil {
		return fail(exitBadInput, "bad request", err)
	}
	id = rid

	ctx, stop := host.SignalContext()
	defer stop()
	agent, nc, _, err := newAgent(ctx, cfg, log)
	if err != nil {
		return fail(exitFailed, "start", err)
	}
	defer nc.Close()
	var d *council.Deliberation
	if task == nil {
		d, err = agent.RunStored(ctx, id)
	} else {
		d, err = agent.Run(ctx, id, *task)
	}
	if err != nil {
		code := exitFailed
		if errors.Is(err, council.ErrInvalid) {
			code = exitBadInput
		}
		return fail(code, "run", err)
	}
	// Token messages go out without acks; let them leave before exiting.
	_ = nc.Flush()
	log.Info("council-agent done", "deliberation", id, "status", d.Status, "duration", time.Since(start))
	if d.Status == council.StatusCompleted {
		return end(exitCompleted, execute.Summary(d))
	}
	return end(exitFailed, execute.Summary(d))
}
