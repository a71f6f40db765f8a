package natsjs_test

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// Each benchmark here has a baseline next to it: the same bytes through the
// bare JetStream API, so the difference is what the adapter adds.

// finished is a completed 3-agent, 1-round deliberation (6 proposals, 6
// critiques and the ranking): the largest value execute writes for it.
func finished(b *testing.B) *council.Deliberation {
	b.Helper()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	d, err := council.New("dlb-bench", counciltest.Task(), now)
	if err != nil {
		b.Fatal(err)
	}
	if err := counciltest.Finish(d, now); err != nil {
		b.Fatal(err)
	}
	return d
}

// BenchmarkStoreUpdateCAS is one state change as execute makes it: Get
// (read and decode) then Update at the revision read (encode and
// compare-and-set).
func BenchmarkStoreUpdateCAS(b *testing.B) {
	e := newEnv(b)
	ctx := b.Context()
	kv, err := e.js.KeyValue(ctx, natsjs.DefaultBucket)
	if err != nil {
		b.Fatal(err)
	}
	s, err := natsjs.NewStore(kv)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Create(ctx, finished(b)); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		d, rev, err := s.Get(ctx, "dlb-bench")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Update(ctx, d, rev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkKVPutBaseline writes the bytes BenchmarkStoreUpdateCAS stores
// with a plain kv.Put: one round trip, no decoding, no revision check.
func BenchmarkKVPutBaseline(b *testing.B) {
	e := newEnv(b)
	ctx := b.Context()
	kv, err := e.js.KeyValue(ctx, natsjs.DefaultBucket)
	if err != nil {
		b.Fatal(err)
	}
	body, err := json.Marshal(finished(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("value: %d bytes", len(body))
	for b.Loop() {
		if _, err := kv.Put(ctx, "dlb-bench", body); err != nil {
			b.Fatal(err)
		}
	}
}

// benchEnvelope is a proposal.generated event with a 1.4 KB proposal.
func benchEnvelope(b *testing.B) council.Envelope {
	b.Helper()
	w := council.Work{Key: "p.0.agent-qa-001", Kind: council.WorkProposal, AgentID: "agent-qa-001", Attempt: 1}
	p := counciltest.ProposalFor(w)
	data, err := json.Marshal(map[string]any{
		"deliberation_id": "dlb-bench", "key": w.Key, "attempt": 1, "stage": 0,
		"proposal": map[string]any{
			"agent_id": p.AgentID, "role": "QA", "stage": 0, "content": p.Content, "model": p.Model,
			"usage":       map[string]int{"prompt_tokens": 412, "completion_tokens": 230, "total_tokens": 642},
			"duration_ms": 2150, "attempt": 1,
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	return council.Envelope{
		ID: "dlb-bench.p.0.agent-qa-001.1.generated", Type: "dev.council.proposal.generated.v1",
		Source: "council.dev/generate", Subject: "task-1", Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Data: data,
	}
}

// BenchmarkPublisherEmit emits one event: CloudEvent checks, encoding and a
// publish with Nats-Msg-Id, acknowledged by the stream. Every event has a
// new id, so none is dropped as a duplicate.
func BenchmarkPublisherEmit(b *testing.B) {
	e := newEnv(b)
	pub, err := natsjs.NewPublisher(e.js)
	if err != nil {
		b.Fatal(err)
	}
	env := benchEnvelope(b)
	prefix := env.ID + "."
	ctx := b.Context()
	i := 0
	for b.Loop() {
		i++
		env.ID = prefix + strconv.Itoa(i)
		if err := pub.Emit(ctx, env); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJetStreamPublishBaseline publishes the bytes Emit sends with a
// plain js.Publish: no CloudEvent work and no Nats-Msg-Id (so no duplicate
// tracking by the stream).
func BenchmarkJetStreamPublishBaseline(b *testing.B) {
	e := newEnv(b)
	pub, err := natsjs.NewPublisher(e.js)
	if err != nil {
		b.Fatal(err)
	}
	env := benchEnvelope(b)
	ctx := b.Context()
	if err := pub.Emit(ctx, env); err != nil {
		b.Fatal(err)
	}
	subject := natsjs.DefaultTopology().EventSubject(env.Type)
	body := lastMsg(b, e.js, natsjs.DefaultEventsStream, subject).Data
	for b.Loop() {
		if _, err := e.js.Publish(ctx, subject, body); err != nil {
			b.Fatal(err)
		}
	}
}
