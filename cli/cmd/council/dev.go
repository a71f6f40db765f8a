package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/cli/stack"
	"council.dev/events"
	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/council"
	"council.dev/shared/redact"
)

// defaultFixture is the deliberation the dev command sends: 3 agents, 1 round.
const defaultFixture = "deliberation.requested.v1/valid/deliberation.json"

func dev(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fl := flag.NewFlagSet("dev", flag.ContinueOnError)
	fl.SetOutput(stderr)
	llmURL := fl.String("llm-url", envOr(getenv, "COUNCIL_LLM_URL", "http://127.0.0.1:8088/v1"), "OpenAI-compatible base URL")
	model := fl.String("model", envOr(getenv, "COUNCIL_LLM_MODEL", "council-tiny"), "model")
	fixture := fl.String("fixture", defaultFixture, "deliberation.requested fixture: a path in the events fixtures, or a file")
	timeout := fl.Duration("timeout", 10*time.Minute, "how long to wait for the result")
	natsURL := fl.String("nats-url", "", "use this NATS server instead of an embedded one")
	maxTokens := fl.Int("max-tokens", 128, "override the fixture's constraints.max_tokens (0 keeps it); the local model is tiny and slow on CPU")
	llmTimeout := fl.Duration("llm-timeout", 5*time.Minute, "per-call LLM timeout (a local server answers one call at a time, so calls queue)")
	verbose := fl.Bool("v", false, "log every event the functions handle")
	concurrency := fl.Int("concurrency", slotsOr(getenv, 4), "calls each of generate and critique makes at once: the LLM server's slots "+
		"(COUNCIL_LLM_SLOTS, as scripts/llm-server.sh starts it); more only queue at the server")
	rayExecutor := fl.String("ray-executor", "127.0.0.1:0", "listen address of the old Ray Executor's gRPC API (fleet.ray_executor.v1, h2c), "+
		`e.g. 127.0.0.1:50056 (the old port; port 0 picks a free one); "" serves none`)
	traced := fl.Bool("trace", false, "trace the deliberation: start a local Jaeger (scripts/jaeger.sh install builds it; or COUNCIL_JAEGER_BIN), "+
		"export every function's spans to it with OTLP, print the trace's URL and keep Jaeger up until interrupted")
	kn := fl.Bool("knative", false, "run on Knative's delivery contract instead of JetStream consumers: the shipped function binaries as "+
		"Services that scale from zero behind a local Broker, both read from the kustomize output of -manifests (README: which to use when)")
	manifests := fl.String("manifests", "knative/overlays/dev", "with -knative: the kustomization to read, relative to the repository root")
	idle := fl.Duration("idle", 0, "with -knative: how long an idle instance lives before it stops (0: Knative's default, 60s)")
	pingEvery := fl.Duration("ping-every", 0, "with -knative: tick the PingSources every this instead of on their schedule (0: the schedule)")
	if err := fl.Parse(args); err != nil {
		return err
	}
	// The local stack has no authentication: what it serves stays on
	// this machine.
	if err := loopbackOnly("-ray-executor", *rayExecutor); err != nil {
		return err
	}
	ev, err := loadFixture(*fixture)
	if err != nil {
		return err
	}
	task, err := events.DecodeRequest(ev)
	if err != nil {
		return fmt.Errorf("fixture %s: %w", *fixture, err)
	}
	if *maxTokens > 0 {
		task.Constraints.MaxTokens = *maxTokens
		if err := task.Validate(); err != nil {
			return fmt.Errorf("fixture %s with -max-tokens %d: %w", *fixture, *maxTokens, err)
		}
		ev = events.ToEvent(events.NewRequest(ev.Source(), ev.ID(), task, ev.Time()))
	}
	if *kn {
		return devKnative(ctx, knativeDev{
			manifests: *manifests, idle: *idle, pingEvery: *pingEvery, natsURL: *natsURL, llmURL: *llmURL, model: *model,
			llmTimeout: *llmTimeout, timeout: *timeout, verbose: *verbose, stdout: stdout, stderr: stderr,
		}, ev, task)
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	dir, err := os.MkdirTemp("", "council-dev-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()

	var tr *devTrace
	if *traced {
		if tr, err = startTrace(ctx, dir, stdout); err != nil {
			return err
		}
		defer tr.stop()
	}
	start := time.Now()
	s, err := stack.Start(ctx, stack.Config{
		LLMURL: *llmURL, LLMModel: *model, NATSURL: *natsURL, StoreDir: dir, LLMTimeout: *llmTimeout, Concurrency: *concurrency,
		Logger:          slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
		RayExecutorAddr: *rayExecutor,
		Env:             tr.env(),
	})
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Fprintf(stdout, "council dev: NATS JetStream at %s, LLM %s (model %s)\n", redact.URLs(s.URL), redact.URL(*llmURL), *model)
	fmt.Fprintln(stdout, "council dev: open, without authentication: it listens on loopback only (docs/security.md)")
	if s.RayExecutorAddr != "" {
		fmt.Fprintf(stdout, "council dev: old Ray Executor gRPC API (fleet.ray_executor.v1, h2c) at %s (RAY_EXECUTOR_ADDRESS)\n", s.RayExecutorAddr)
	}

	// A fresh event id per run: the deliberation id derives from source + id.
	ev.SetID(fmt.Sprintf("dev-%d", time.Now().UnixNano()))
	id := council.DeliberationID(ev.Source(), ev.ID())
	ctx = tr.begin(ctx, &ev)
	// The same event lines and progress as `council watch`; NATS calls the
	// handler of one subscription on one goroutine.
	lines := newWatcher(stdout, id, false)
	lines.resolve = func(e event.Event) (event.Event, error) { return natsjs.Resolve(ctx, s.JS, e) }
	sub, err := s.NC.Subscribe(s.Topology.EventsSubjectPrefix+".>", func(m *nats.Msg) { lines.event(m.Data) })
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	data, err := events.EncodeStructured(ev)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	if _, err := s.JS.Publish(ctx, s.Topology.EventSubject(ev.Type()), data, jetstreamMsgID(ev.ID())...); err != nil {
		return fmt.Errorf("send request: %w", err)
	}
	fmt.Fprintf(stdout, "sent %s: task %s (%s, %d agents, %d round(s)) → deliberation %s\n",
		ev.Type(), task.ID, task.Kind, len(task.Agents), task.Constraints.Rounds, id)

	wctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	out, err := s.Await(wctx, id)
	if err != nil {
		return err
	}
	// Let the progress lines already received print before the result.
	_ = sub.Drain()
	for wait := time.Now().Add(time.Second); sub.IsValid() && time.Now().Before(wait); {
		time.Sleep(5 * time.Millisecond)
	}
	tr.end(ctx, s, stdout)
	if out.Failed != nil {
		return fmt.Errorf("deliberation %s failed after %s: %s", id, time.Since(start).Round(time.Millisecond), out.Failed.Reason)
	}
	printResult(stdout, out.Completed, time.Since(start))
	tr.wait(ctx, stdout)
	return nil
}

// loopbackOnly refuses a listen address (host:port) that is not on a
// loopback interface; empty serves nothing and is fine.
func loopbackOnly(flag, addr string) error {
	if addr == "" {
		return nil
	}
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return usagef("%s %q: want host:port: %v", flag, addr, err)
	}
	if ip := net.ParseIP(h); h != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return usagef("%s %q: council dev has no authentication and listens on loopback only (127.0.0.1, ::1, localhost)", flag, addr)
	}
	return nil
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

func printResult(w io.Writer, c *events.Completed, took time.Duration) {
	fmt.Fprintf(w, "\ndeliberation %s completed in %s: %d tokens (prompt %d, completion %d)\n",
		c.DeliberationID, took.Round(time.Millisecond), c.Usage.TotalTokens, c.Usage.PromptTokens, c.Usage.CompletionTokens)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RANK\tAGENT\tROLE\tSCORE\tCRITIQUES\tTOKENS\tDURATION")
	for _, r := range c.Ranking {
		score := "-"
		if r.Scored {
			score = fmt.Sprintf("%.3f", r.Score)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%dms\n", r.Rank, r.Proposal.AgentID, r.Proposal.Role, score,
			len(r.Critiques), r.Proposal.Usage.TotalTokens, r.Proposal.DurationMS)
	}
	_ = tw.Flush()
	for _, f := range c.Failures {
		fmt.Fprintf(w, "failed: %s: %s\n", f.AgentID, f.Reason)
	}
	if len(c.Ranking) > 0 {
		content := c.Ranking[0].Proposal.Content
		if len(content) > 400 {
			content = content[:400] + "…"
		}
		fmt.Fprintf(w, "winner: %s\n%s\n", c.Winner, content)
	}
	if len(c.Output) > 0 {
		fmt.Fprintf(w, "structured output: %s\n", c.Output)
	}
}

func jetstreamMsgID(id string) []jetstream.PublishOpt {
	return []jetstream.PublishOpt{jetstream.WithMsgID(id)}
}

// slotsOr is COUNCIL_LLM_SLOTS, the local LLM server's parallel slots, or
// def when it is unset or not a positive number.
func slotsOr(getenv func(string) string, def int) int {
	if n, err := strconv.Atoi(getenv("COUNCIL_LLM_SLOTS")); err == nil && n > 0 {
		return n
	}
	return def
}
