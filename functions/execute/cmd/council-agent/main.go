// Command council-agent is the entrypoint of the Ray job that runs a
// backend ray deliberation. execute submits it with the request in its
// environment; it runs the deliberation in-process (agents in parallel
// against the LLM server), records the outcome in the deliberation state
// execute owns (JetStream KV, compare-and-set) and emits the same
// deliberation.completed or deliberation.failed event execute would.
//
// Environment: COUNCIL_REQUEST (base64 of the deliberation.requested event,
// structured JSON) or COUNCIL_REQUEST_FILE (a file holding it, relative to
// the working directory), COUNCIL_DELIBERATION_ID, and the host
// configuration: COUNCIL_NATS_URL, COUNCIL_LLM_URL, COUNCIL_LLM_MODEL, the
// other COUNCIL_LLM_* variables and COUNCIL_LEGACY_SUBJECTS (also publish
// the outcome on the old fleet's agent.response.* subjects), see
// docs/CONVENTIONS.md.
//
// Exit status: 0 completed, 1 failed (or stopped, or the state could not be
// written), 2 bad input. The last line it writes is
// "council-agent: deliberation <id> <completed|failed>: <reason>".
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

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

func main() { os.Exit(run()) }

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
	nc, js, err := host.ConnectNATS(ctx, cfg, "council-agent")
	if err != nil {
		return fail(exitFailed, "nats", err)
	}
	defer nc.Close()
	store, err := natsjs.OpenStore(ctx, js, natsjs.WithLogger(log), natsjs.WithTopology(cfg.NATS))
	if err != nil {
		return fail(exitFailed, "store", err)
	}
	publisher, err := natsjs.NewPublisher(js, natsjs.WithLogger(log), natsjs.WithTopology(cfg.NATS))
	if err != nil {
		return fail(exitFailed, "publisher", err)
	}
	tokens, err := natsjs.NewTokenPublisher(nc, natsjs.WithTopology(cfg.NATS))
	if err != nil {
		return fail(exitFailed, "token publisher", err)
	}
	llm, err := host.NewCompleter(cfg, log)
	if err != nil {
		return fail(exitBadInput, "llm client", err)
	}
	agent := &execute.Agent{
		Store: store, Emitter: publisher, LLM: llm, Tokens: tokens,
		Source: cfg.SourceFor("council-agent"), Log: log,
	}
	if cfg.LegacySubjects {
		lp, err := legacy.New(js, legacy.WithLogger(log), legacy.WithReplicas(cfg.NATS.Replicas))
		if err != nil {
			return fail(exitBadInput, "legacy publisher", err)
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = lp.Setup(sctx)
		cancel()
		if err != nil {
			return fail(exitFailed, "legacy stream", err)
		}
		agent.Legacy = lp
	}
	d, err := agent.Run(ctx, id, task)
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
