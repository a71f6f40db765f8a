package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	eventingv1 "knative.dev/eventing/pkg/apis/eventing/v1"

	"council.dev/events"
	"council.dev/knative/localbroker"
	"council.dev/knative/localknative"
	"council.dev/knative/localserving"
	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/council"
	"council.dev/shared/redact"
)

// knativeDev is what `council dev -knative` runs.
type knativeDev struct {
	manifests  string // kustomization, relative to the repository root
	idle       time.Duration
	pingEvery  time.Duration
	natsURL    string
	llmURL     string
	model      string
	llmTimeout time.Duration
	timeout    time.Duration
	verbose    bool
	stdout     io.Writer
	stderr     io.Writer
}

// devKnative runs ev the way Knative runs it: the shipped binaries of the
// three functions, built here from their main packages, as Services that
// start from zero on the first event, behind a local Broker, both
// configured by the kustomize output of o.manifests (localknative); the
// NATS topology set up once first, as `council setup` does on a cluster.
func devKnative(ctx context.Context, o knativeDev, ev event.Event, task council.Task) error {
	root, err := workspaceRoot()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "council-dev-knative-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(o.stderr, &slog.HandlerOptions{Level: level}))
	out := o.stdout

	t0 := time.Now()
	bins, err := localknative.BuildFunctions(ctx, root, filepath.Join(dir, "bin"))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "council dev -knative: built the shipped binaries (%v) in %s\n", localknative.Functions, since(t0))

	natsURL := o.natsURL
	if natsURL == "" {
		srv, err := server.NewServer(&server.Options{
			Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: filepath.Join(dir, "nats"), NoSigs: true, NoLog: true,
		})
		if err != nil {
			return fmt.Errorf("nats server: %w", err)
		}
		srv.Start()
		defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
		if !srv.ReadyForConnections(10 * time.Second) {
			return errors.New("embedded nats server did not start")
		}
		natsURL = srv.ClientURL()
	}
	nc, err := nats.Connect(natsURL, nats.Name("council-dev-knative"))
	if err != nil {
		return fmt.Errorf("connect %s: %w", redact.URLs(natsURL), err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	t0 = time.Now()
	if err := natsjs.Setup(ctx, js, natsjs.DefaultTopology()); err != nil {
		return fmt.Errorf("set up the topology: %w", err)
	}
	fmt.Fprintf(out, "council dev -knative: NATS JetStream at %s, topology set up once in %s (the functions bind to it)\n", redact.URLs(natsURL), since(t0))

	orch, err := localknative.NewRecorder("orchestrator", log)
	if err != nil {
		return err
	}
	defer func() { _ = orch.Close() }()
	watch, err := localknative.TriggerTo("council-dev-watch", "", orch.URL())
	if err != nil {
		return err
	}
	sopts := []localserving.Option{}
	if o.idle > 0 {
		sopts = append(sopts, localserving.WithIdleWindow(o.idle))
	}
	bopts := []localbroker.Option{}
	if o.pingEvery > 0 {
		bopts = append(bopts, localbroker.WithPingPeriod(o.pingEvery))
	}
	fnOut := io.Discard
	if o.verbose {
		fnOut = o.stderr
	}
	c, err := localknative.Start(ctx, localknative.Config{
		Dir: filepath.Join(root, o.manifests), JS: js, Binaries: bins,
		Env: map[string]string{
			"COUNCIL_NATS_URL": natsURL, "COUNCIL_LLM_URL": o.llmURL, "COUNCIL_LLM_MODEL": o.model, "COUNCIL_LLM_MODELS": o.model,
			"COUNCIL_LLM_TIMEOUT": o.llmTimeout.String(), "COUNCIL_NATS_SETUP": "bind",
		},
		Triggers: []*eventingv1.Trigger{watch}, Serving: sopts, Broker: bopts, Logger: log, Output: fnOut,
	})
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	fmt.Fprintf(out, "council dev -knative: %s read: %d Services, %d Triggers (+1 watching every event), broker ingress %s; every function at zero instances\n",
		o.manifests, len(c.Manifests.Services), len(c.Manifests.Triggers)-1, c.Broker.URL())
	fmt.Fprintln(out, "council dev -knative: open, without authentication: it listens on loopback only (no OIDC tokens locally; docs/security.md)")

	ev.SetID(fmt.Sprintf("dev-%d", time.Now().UnixNano()))
	id := council.DeliberationID(ev.Source(), ev.ID())
	client, err := cloudevents.NewClientHTTP()
	if err != nil {
		return err
	}
	start := time.Now()
	if res := client.Send(cloudevents.ContextWithTarget(ctx, c.Broker.URL()), ev); !cloudevents.IsACK(res) {
		return fmt.Errorf("broker ingress refused the request: %w", res)
	}
	fmt.Fprintf(out, "sent %s to the broker: task %s (%s, %d agents, %d round(s)) → deliberation %s\n",
		ev.Type(), task.ID, task.Kind, len(task.Agents), task.Constraints.Rounds, id)

	lines := newWatcher(out, id, false)
	wctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	seen := 0
	var end *event.Event
	for end == nil {
		err := orch.Wait(wctx, func(r []localknative.Received) bool { return len(r) > seen })
		if err != nil {
			return fmt.Errorf("deliberation %s: %w", id, err)
		}
		got := orch.Events()
		for _, r := range got[seen:] {
			data, err := json.Marshal(r.Event)
			if err != nil {
				continue
			}
			lines.event(data)
			if isEnd(r.Event, id) {
				e := r.Event
				end = &e
			}
		}
		seen = len(got)
	}
	took := time.Since(start)
	printColdStarts(out, c.Serving)
	switch end.Type() {
	case events.TypeDeliberationCompleted:
		done, err := events.DecodeCompleted(*end)
		if err != nil {
			return err
		}
		printResult(out, &done, took)
		return nil
	default:
		f, err := events.DecodeFailed(*end)
		if err != nil {
			return err
		}
		return fmt.Errorf("deliberation %s failed after %s: %s", id, took.Round(time.Millisecond), f.Reason)
	}
}

// isEnd reports whether e ends deliberation id.
func isEnd(e event.Event, id string) bool {
	switch e.Type() {
	case events.TypeDeliberationCompleted:
		c, err := events.DecodeCompleted(e)
		return err == nil && c.DeliberationID == id
	case events.TypeDeliberationFailed:
		f, err := events.DecodeFailed(e)
		return err == nil && f.DeliberationID == id
	}
	return false
}

// printColdStarts prints, per function, its starts and the cold start in
// the event path next to a warm request.
func printColdStarts(w io.Writer, sv *localserving.Serving) {
	fmt.Fprintln(w, "\nscale from zero (localserving): per function")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FUNCTION\tSTARTS\tEXEC→READY\tCOLD REQUESTS\tHELD (MEAN)\tWARM REQUESTS\tWARM (MEAN)\tINSTANCES NOW")
	for _, f := range localknative.Functions {
		st := sv.Stats(f)
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%d\t%s\t%d\n", f, st.Starts, st.MeanReady.Round(time.Millisecond),
			st.ColdRequests, st.MeanColdWait.Round(time.Millisecond), st.WarmRequests, st.MeanWarm.Round(time.Millisecond), st.Instances)
	}
	_ = tw.Flush()
}

// workspaceRoot is the directory of go.work above the working directory:
// -knative builds the functions from the source tree.
func workspaceRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", usagef("-knative builds the shipped function binaries from the source tree: run it inside the repository (no go.work above %s)", dir)
		}
		dir = parent
	}
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }
