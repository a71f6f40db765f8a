package natsjs_test

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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

// BenchmarkRecordAndHeader is the write of one result on a one-replica
// file-backed bucket (ADR 8): a new record (create) and the header
// (compare-and-set), sent one after the other (sequential), sent together
// on one connection and acknowledged together (pipelined, what OpenStore's
// store does), and as an atomic batch (nats-server 2.12's
// Nats-Batch-Id, the stream allowing atomic publishes). Baseline: one put
// of the record's size (put).
func BenchmarkRecordAndHeader(b *testing.B) {
	e := newEnv(b)
	ctx := b.Context()
	kv, err := e.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "pair", Storage: jetstream.FileStorage})
	if err != nil {
		b.Fatal(err)
	}
	st, err := e.js.Stream(ctx, "KV_pair")
	if err != nil {
		b.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.AllowAtomicPublish = true
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		b.Fatal(err)
	}
	record, header := bytes.Repeat([]byte("r"), 1200), bytes.Repeat([]byte("h"), 600)
	rev, err := kv.Put(ctx, "header", header)
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	next := func() string { n++; return "rec." + strconv.Itoa(n) }
	wait := func(f jetstream.PubAckFuture) uint64 {
		select {
		case ack := <-f.Ok():
			return ack.Sequence
		case err := <-f.Err():
			b.Fatal(err)
		}
		return 0
	}
	b.Run("put", func(b *testing.B) {
		for b.Loop() {
			if _, err := kv.Put(ctx, "raw", record); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sequential", func(b *testing.B) {
		for b.Loop() {
			if _, err := kv.Create(ctx, next(), record); err != nil {
				b.Fatal(err)
			}
			if rev, err = kv.Update(ctx, "header", header, rev); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("pipelined", func(b *testing.B) {
		for b.Loop() {
			r, err := e.js.PublishMsgAsync(&nats.Msg{Subject: "$KV.pair." + next(), Data: record}, jetstream.WithExpectLastSequencePerSubject(0))
			if err != nil {
				b.Fatal(err)
			}
			h, err := e.js.PublishMsgAsync(&nats.Msg{Subject: "$KV.pair.header", Data: header}, jetstream.WithExpectLastSequencePerSubject(rev))
			if err != nil {
				b.Fatal(err)
			}
			wait(r)
			rev = wait(h)
		}
	})
	b.Run("atomic-batch", func(b *testing.B) {
		for b.Loop() {
			id := "b" + strconv.Itoa(n)
			m := nats.NewMsg("$KV.pair." + next())
			m.Data = record
			m.Header.Set("Nats-Batch-Id", id)
			m.Header.Set("Nats-Batch-Sequence", "1")
			m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
			if err := e.nc.PublishMsg(m); err != nil {
				b.Fatal(err)
			}
			c := nats.NewMsg("$KV.pair.header")
			c.Data = header
			c.Header.Set("Nats-Batch-Id", id)
			c.Header.Set("Nats-Batch-Sequence", "2")
			c.Header.Set("Nats-Batch-Commit", "1")
			c.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
			resp, err := e.nc.RequestMsg(c, 5*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			var ack struct {
				Seq   uint64 `json:"seq"`
				Error *struct {
					Description string `json:"description"`
				} `json:"error"`
			}
			if err := json.Unmarshal(resp.Data, &ack); err != nil || ack.Error != nil {
				b.Fatalf("batch commit: %s (%v)", resp.Data, err)
			}
			rev = ack.Seq
		}
	})
}
