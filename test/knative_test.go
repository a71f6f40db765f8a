package test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/event"
	eventingv1 "knative.dev/eventing/pkg/apis/eventing/v1"

	"council.dev/events"
	"council.dev/knative/localbroker"
	"council.dev/knative/localknative"
	"council.dev/knative/localserving"
	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/adapters/natsjs/natstest"
	"council.dev/shared/adapters/vllm/vllmtest"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// knative is council on Knative's delivery contract, locally: the shipped
// binaries of the three functions, built from their main packages, as
// Services that scale from zero, behind the local Broker, both read from
// the dev overlay's kustomize output (localknative).
type knative struct {
	*localknative.Cluster
	orch  *localknative.Recorder
	mu    sync.Mutex
	tries []localbroker.Attempt
}

// attempts are the broker's delivery attempts so far matching keep.
func (k *knative) attempts(keep func(localbroker.Attempt) bool) []localbroker.Attempt {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []localbroker.Attempt
	for _, a := range k.tries {
		if keep(a) {
			out = append(out, a)
		}
	}
	return out
}

// knOptions say how startKnative runs.
type knOptions struct {
	// idle is how long an idle instance lives.
	idle time.Duration
	// duplicate delivers every event twice.
	duplicate bool
	// llmURL is the LLM server's (the real one when empty).
	llmURL string
	// ping ticks the PingSources this often (their schedule when 0).
	ping time.Duration
}

// startKnative starts the topology once (as `council setup` or the setup
// Job does), then the functions and the Broker of knative/overlays/dev.
func startKnative(t testing.TB, o knOptions) *knative {
	t.Helper()
	if o.llmURL == "" {
		o.llmURL = vllmtest.URL(t)
	}
	ctx := context.Background()
	srv, _, js := natstest.Start(t)
	if err := natsjs.Setup(ctx, js, natsjs.DefaultTopology()); err != nil {
		t.Fatalf("set up the topology: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bins, err := localknative.BuildFunctions(ctx, root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	k := &knative{}
	if k.orch, err = localknative.NewRecorder("orchestrator", log); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.orch.Close() })
	var triggers []*eventingv1.Trigger
	for _, typ := range []string{events.TypeDeliberationAccepted, events.TypeDeliberationCompleted, events.TypeDeliberationFailed} {
		// The Orchestrator's own Trigger on a cluster.
		tr, err := localknative.TriggerTo("orchestrator-"+typ, typ, k.orch.URL())
		if err != nil {
			t.Fatal(err)
		}
		triggers = append(triggers, tr)
	}
	bopts := []localbroker.Option{localbroker.WithObserver(func(a localbroker.Attempt) {
		k.mu.Lock()
		k.tries = append(k.tries, a)
		k.mu.Unlock()
	})}
	if o.duplicate {
		bopts = append(bopts, localbroker.WithDuplicateDelivery())
	}
	if o.ping > 0 {
		bopts = append(bopts, localbroker.WithPingPeriod(o.ping))
	}
	k.Cluster, err = localknative.Start(ctx, localknative.Config{
		Dir: filepath.Join(root, "knative", "overlays", "dev"), JS: js, Binaries: bins,
		Env: map[string]string{
			"COUNCIL_NATS_URL": srv.ClientURL(), "COUNCIL_LLM_URL": o.llmURL,
			"COUNCIL_LLM_MODEL": vllmtest.Model(), "COUNCIL_LLM_MODELS": vllmtest.Model(),
			"COUNCIL_NATS_SETUP": "bind", "COUNCIL_LOG_LEVEL": "warn", "COUNCIL_LLM_TIMEOUT": "5m",
		},
		Triggers: triggers,
		Serving:  []localserving.Option{localserving.WithIdleWindow(o.idle)},
		Broker:   bopts,
		Logger:   log, Output: os.Stderr,
	})
	if err != nil {
		t.Fatalf("start the local Knative: %v", err)
	}
	t.Cleanup(func() {
		if err := k.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return k
}

// post sends e to the broker ingress in binary mode, as the Orchestrator
// does, and wants the 202 of an event persisted.
func (k *knative) post(t testing.TB, e event.Event) {
	t.Helper()
	c, err := cloudevents.NewClientHTTP()
	if err != nil {
		t.Fatal(err)
	}
	res := c.Send(cloudevents.ContextWithTarget(context.Background(), k.Broker.URL()), e)
	if !cloudevents.IsACK(res) {
		t.Fatalf("broker ingress refused %s: %v", e.ID(), res)
	}
}

// outcomes are the completed and failed events of deliberation id the
// Orchestrator received, one per event id: with every event delivered
// twice, the Orchestrator's own Trigger delivers each twice too, and a
// consumer drops a CloudEvent whose id it has seen (the ids are
// deterministic, so a re-sent outcome has the same id).
func (k *knative) outcomes(t *testing.T, id string) (completed []*events.Completed, failed []string) {
	t.Helper()
	seen := map[string]bool{}
	for _, r := range k.orch.Events() {
		if seen[r.Event.ID()] {
			continue
		}
		seen[r.Event.ID()] = true
		switch r.Event.Type() {
		case events.TypeDeliberationCompleted:
			c, err := events.DecodeCompleted(r.Event)
			if err != nil {
				t.Fatalf("the Orchestrator cannot read %s: %v", r.Event.ID(), err)
			}
			if c.DeliberationID == id {
				completed = append(completed, &c)
			}
		case events.TypeDeliberationFailed:
			f, err := events.DecodeFailed(r.Event)
			if err != nil {
				t.Fatalf("the Orchestrator cannot read %s: %v", r.Event.ID(), err)
			}
			if f.DeliberationID == id {
				failed = append(failed, f.Reason)
			}
		}
	}
	return completed, failed
}

// awaitOutcome waits for deliberation id to end and wants it completed.
func (k *knative) awaitOutcome(t *testing.T, id string) *events.Completed {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	err := k.orch.Wait(ctx, func([]localknative.Received) bool {
		c, f := k.outcomes(t, id)
		return len(c)+len(f) > 0
	})
	if err != nil {
		t.Fatalf("deliberation %s: %v", id, err)
	}
	c, f := k.outcomes(t, id)
	if len(f) > 0 {
		t.Fatalf("deliberation %s failed: %v", id, f)
	}
	return c[0]
}

// idle waits until the named functions have no instance left.
func (k *knative) idle(t testing.TB, within time.Duration, names ...string) {
	t.Helper()
	until(t, within, func() error {
		for _, n := range names {
			if got := k.Serving.Instances(n); got != 0 {
				return fmt.Errorf("%s has %d instances", n, got)
			}
		}
		return nil
	})
}

// until waits until cond returns nil, checking every 50ms, and fails t
// with cond's last error when it does not within d.
func until(t testing.TB, d time.Duration, cond func() error) {
	t.Helper()
	var last error
	if !counciltest.Within(d, 50*time.Millisecond, func() bool { last = cond(); return last == nil }) {
		t.Fatalf("after %s: %v", d, last)
	}
}

// TestKnativeDeliberation runs whole deliberations the way Knative runs
// them, on the shipped binaries against the real LLM server: the Broker
// delivers every event twice (as a Trigger retry after a lost 2xx would);
// the functions start from zero on the first event and stop when idle; a
// generate instance is killed mid-request; an invalid event is answered
// 400 and dead-lettered, never retried; the PingSource's ticks reach
// execute. Each deliberation completes exactly once, with no doubled
// proposal.
func TestKnativeDeliberation(t *testing.T) {
	const idle = 3 * time.Second
	k := startKnative(t, knOptions{idle: idle, duplicate: true, ping: time.Second})
	for _, f := range localknative.Functions {
		if n := k.Serving.Instances(f); n != 0 {
			t.Fatalf("%s starts with %d instances; the dev overlay says min-scale 0", f, n)
		}
	}

	t.Run("deliberation, every event twice, from zero", func(t *testing.T) {
		e := request(t, 24)
		id := council.DeliberationID(e.Source(), e.ID())
		k.post(t, e)
		c := k.awaitOutcome(t, id)
		checkCompleted(t, c, "task-42")
		// Quiet: generate and critique back at zero, so no delivery of
		// this deliberation is still under way.
		k.idle(t, time.Minute, "generate", "critique")
		if got, _ := k.outcomes(t, id); len(got) != 1 {
			t.Errorf("the Orchestrator received %d distinct deliberation.completed, want exactly 1", len(got))
		}
		for _, f := range localknative.Functions {
			st := k.Serving.Stats(f)
			if st.ColdRequests == 0 || st.Starts == 0 {
				t.Errorf("%s: %d cold requests, %d starts: want the first event to start it from zero", f, st.ColdRequests, st.Starts)
			}
			t.Logf("%s: %d starts, ready in %s (mean); %d cold requests held %s (mean); %d warm, %s (mean)",
				f, st.Starts, st.MeanReady, st.ColdRequests, st.MeanColdWait, st.WarmRequests, st.MeanWarm)
		}
		dups := k.attempts(func(a localbroker.Attempt) bool { return a.Duplicate })
		if len(dups) == 0 {
			t.Error("no event was delivered twice")
		}
	})

	t.Run("generate killed mid-request", func(t *testing.T) {
		e := request(t, 48)
		id := council.DeliberationID(e.Source(), e.ID())
		k.post(t, e)
		var pid int
		until(t, 2*time.Minute, func() error {
			if k.Serving.Stats("generate").InFlight == 0 {
				return fmt.Errorf("generate has no request in flight")
			}
			var err error
			pid, err = k.Serving.Kill("generate")
			return err
		})
		t.Logf("killed generate pid %d mid-request", pid)
		c := k.awaitOutcome(t, id)
		checkCompleted(t, c, "task-42")
		k.idle(t, time.Minute, "generate", "critique")
		if got, _ := k.outcomes(t, id); len(got) != 1 {
			t.Errorf("the Orchestrator received %d distinct deliberation.completed, want exactly 1", len(got))
		}
		if k.Serving.Stats("generate").Failed == 0 {
			t.Error("no request failed on the killed instance")
		}
	})

	t.Run("invalid event dead-lettered, not retried", func(t *testing.T) {
		e := request(t, 24)
		var data map[string]any
		if err := json.Unmarshal(e.Data(), &data); err != nil {
			t.Fatal(err)
		}
		delete(data, "agents")
		if err := e.SetData(event.ApplicationJSON, data); err != nil {
			t.Fatal(err)
		}
		k.post(t, e)
		until(t, time.Minute, func() error {
			for _, d := range k.DeadLetters() {
				if d.Event.ID() == e.ID() {
					return nil
				}
			}
			return fmt.Errorf("event %s not dead-lettered", e.ID())
		})
		var dl event.Event
		for _, d := range k.DeadLetters() {
			if d.Event.ID() == e.ID() {
				dl = d.Event
			}
		}
		if code := fmt.Sprint(dl.Extensions()["knativeerrorcode"]); code != "400" {
			t.Errorf("dead letter's knativeerrorcode = %s, want 400", code)
		}
		tries := k.attempts(func(a localbroker.Attempt) bool { return a.EventID == e.ID() && !a.DeadLetter })
		if len(tries) != 1 || tries[0].StatusCode != 400 {
			t.Errorf("attempts at execute: %+v; want one, answered 400", tries)
		}
	})

	t.Run("ping reaches execute", func(t *testing.T) {
		until(t, time.Minute, func() error {
			for _, a := range k.attempts(func(a localbroker.Attempt) bool { return a.EventType == events.TypePing && !a.DeadLetter }) {
				if a.StatusCode >= 200 && a.StatusCode < 300 {
					return nil
				}
			}
			return fmt.Errorf("no ping delivered to execute")
		})
	})
}
