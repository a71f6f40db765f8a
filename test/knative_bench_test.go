package test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"

	"council.dev/cli/stack"
	"council.dev/events"
	"council.dev/knative/localknative"
	"council.dev/shared/council"
)

// deadLLM is an address nothing answers on: the benchmarks below measure
// the event path, so no LLM call may weigh on them (generate's calls fail
// at once and the deliberations end failed, after the measured event).
const deadLLM = "http://127.0.0.1:9/v1"

// quickRequest is a deliberation that ends by itself a second after it is
// accepted (timeout_seconds 1, no retries): the work it fans out is cut at
// its deadline, so every function is idle again soon after.
func quickRequest(b *testing.B) event.Event {
	b.Helper()
	e := request(b, 8)
	var data map[string]any
	if err := json.Unmarshal(e.Data(), &data); err != nil {
		b.Fatal(err)
	}
	c := data["constraints"].(map[string]any)
	c["timeout_seconds"], c["max_retries"] = 1, 0
	if err := e.SetData(event.ApplicationJSON, data); err != nil {
		b.Fatal(err)
	}
	return e
}

// BenchmarkEventPath measures one event's path through execute on each
// transport, side by side in one run: from the Orchestrator sending
// deliberation.requested to it receiving execute's deliberation.accepted.
//
//   - jetstream: the functions as JetStream consumers (cli/stack, council
//     dev), the request published to the broker stream, the reply read
//     from it;
//
//   - knative-warm: the shipped binaries behind the local Broker (council
//     dev -knative), the request posted to the broker ingress, the reply
//     through an Orchestrator Trigger, execute already running;
//
//   - knative-cold: the same with execute at zero instances: the event
//     waits, as the activator holds it, for a process to start and answer
//     its readiness probe (cold start in the event path).
//
//     go test -run '^$' -bench EventPath -benchtime 20x .
func BenchmarkEventPath(b *testing.B) {
	b.Run("jetstream", func(b *testing.B) {
		s, err := stack.Start(context.Background(), stack.Config{
			LLMURL: deadLLM, LLMModel: "council-tiny", StoreDir: b.TempDir(), SweepEvery: -1,
		})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		accepted := make(chan string, 64)
		sub, err := s.NC.Subscribe(s.Topology.EventSubject(events.TypeDeliberationAccepted), func(m *nats.Msg) {
			if e, err := events.DecodeStructured(m.Data); err == nil {
				if a, err := events.DecodeAccepted(e); err == nil {
					accepted <- a.DeliberationID
				}
			}
		})
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = sub.Unsubscribe() }()
		b.ResetTimer()
		for range b.N {
			e := quickRequest(b)
			id := council.DeliberationID(e.Source(), e.ID())
			send(b, s, e)
			awaitID(b, accepted, id)
		}
	})
	k := startKnative(b, knOptions{idle: 300 * time.Millisecond, llmURL: deadLLM})
	accepted := func(id string) func([]localknative.Received) bool {
		return func(rs []localknative.Received) bool {
			for _, r := range rs {
				if a, err := events.DecodeAccepted(r.Event); err == nil && r.Event.Type() == events.TypeDeliberationAccepted && a.DeliberationID == id {
					return true
				}
			}
			return false
		}
	}
	one := func(b *testing.B) {
		e := quickRequest(b)
		id := council.DeliberationID(e.Source(), e.ID())
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		k.post(b, e)
		if err := k.orch.Wait(ctx, accepted(id)); err != nil {
			b.Fatalf("deliberation %s not accepted: %v", id, err)
		}
	}
	b.Run("knative-warm", func(b *testing.B) {
		one(b) // execute started
		b.ResetTimer()
		for range b.N {
			one(b)
		}
	})
	b.Run("knative-cold", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			k.idle(b, time.Minute, localknative.Functions...)
			b.StartTimer()
			one(b)
		}
		st := k.Serving.Stats("execute")
		b.ReportMetric(float64(st.MeanReady.Microseconds())/1e3, "exec-ready-ms")
	})
}

// awaitID waits for id on ch, skipping others.
func awaitID(b *testing.B, ch <-chan string, id string) {
	b.Helper()
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	for {
		select {
		case got := <-ch:
			if got == id {
				return
			}
		case <-timeout.C:
			b.Fatal(fmt.Errorf("deliberation %s: no deliberation.accepted within a minute", id))
		}
	}
}
