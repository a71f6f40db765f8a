package natsjs_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// TestStoreWritesRecordsOnceAndReadsThemCold checks the layout of ADR 8: a
// transition writes the header and only the new records; another store
// over the same bucket, which has seen none of them, reads the same
// deliberation (functions backend, and a Ray result completed whole).
func TestStoreWritesRecordsOnceAndReadsThemCold(t *testing.T) {
	e := newEnv(t)
	ctx := ctxTimeout(t)
	kv, err := e.js.KeyValue(ctx, natsjs.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	counted := &countingKV{KeyValue: kv}
	writer, err := natsjs.NewStore(counted)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

	d, err := council.New("dlb-records", counciltest.Task(), t0)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := writer.Create(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	for !d.Status.Terminal() {
		k := d.Outbox[0]
		d.Acknowledge(k)
		if w, ok := d.Work[k]; ok {
			counted.reset()
			if w.Kind == council.WorkProposal {
				_, err = d.RecordProposal(k, counciltest.ProposalFor(*w), t0.Add(time.Second))
			} else {
				_, err = d.RecordCritique(k, counciltest.CritiqueFor(*w, d.Task.Constraints.Rubric), t0.Add(time.Second))
			}
			if err != nil {
				t.Fatal(err)
			}
			if rev, err = writer.Update(ctx, d, rev); err != nil {
				t.Fatal(err)
			}
			// The header, and the one record of the result (no re-write of
			// the task or of earlier results; none at the end either: the
			// ranking names the records already written) — plus, for the
			// last result of a group of work, the group's segment.
			want := 1
			if !slices.ContainsFunc(d.Pending(), func(p *council.Work) bool { return p.Kind == w.Kind && p.Stage == w.Stage }) {
				want = 2
			}
			if got := counted.recordWrites(); got != want {
				t.Fatalf("recording %s wrote %d records, want %d: %v", k, got, want, counted.keys)
			}
			continue
		}
		if rev, err = writer.Update(ctx, d, rev); err != nil {
			t.Fatal(err)
		}
	}

	// Ended and acknowledged: out of the index, its marker purged with a TTL
	// (not a delete marker kept forever).
	for len(d.Outbox) > 0 {
		d.Acknowledge(d.Outbox[0])
	}
	if _, err = writer.Update(ctx, d, rev); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, "active.dlb-records"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("index key of an ended deliberation: %v, want ErrKeyNotFound", err)
	}
	if msg, err := e.js.Stream(ctx, "KV_"+natsjs.DefaultBucket); err != nil {
		t.Fatal(err)
	} else if m, err := msg.GetLastMsgForSubject(ctx, "$KV."+natsjs.DefaultBucket+".active.dlb-records"); err != nil {
		t.Errorf("no marker for the index key: %v", err)
	} else if m.Header.Get("Nats-TTL") == "" || m.Header.Get("KV-Operation") != "PURGE" {
		t.Errorf("index key removed with headers %v, want a PURGE with a Nats-TTL", m.Header)
	}

	ray, err := council.New("dlb-records-ray", func() council.Task {
		task := counciltest.Task()
		task.Backend = council.BackendRay
		return task
	}(), t0)
	if err != nil {
		t.Fatal(err)
	}
	rayRev, err := writer.Create(ctx, ray)
	if err != nil {
		t.Fatal(err)
	}
	// As the Ray job records the engine's outcome (council-agent): the
	// results, which answer no work of this deliberation, and the result.
	ray.Proposals, ray.Critiques, ray.Failures = d.Proposals, d.Critiques, d.Failures
	ray.Complete(*d.Result, t0.Add(time.Minute))
	if _, err := writer.Update(ctx, ray, rayRev); err != nil {
		t.Fatal(err)
	}

	reader, err := natsjs.NewStore(kv) // a cold cache: every record read from the bucket
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []*council.Deliberation{d, ray} {
		got, _, err := reader.Get(ctx, want.ID)
		if err != nil {
			t.Fatalf("cold Get %s: %v", want.ID, err)
		}
		if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s read cold differs (-want +got):\n%s", want.ID, diff)
		}
	}

	// A record gone missing makes the value undecodable, not a panic nor
	// a partial deliberation.
	keys, err := kv.ListKeysFiltered(ctx, "dlb-records.p.>")
	if err != nil {
		t.Fatal(err)
	}
	var victim string
	for k := range keys.Keys() {
		victim = k
	}
	if err := kv.Purge(ctx, victim); err != nil {
		t.Fatal(err)
	}
	cold, err := natsjs.NewStore(kv)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cold.Get(ctx, "dlb-records"); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("Get with record %s purged: error = %v, want one naming the missing record", victim, err)
	}
}

// countingKV counts the writes of a store to its bucket.
type countingKV struct {
	jetstream.KeyValue
	keys []string
}

func (c *countingKV) reset() { c.keys = nil }

func (c *countingKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	c.keys = append(c.keys, key)
	return c.KeyValue.Create(ctx, key, value, opts...)
}

// recordWrites is how many records (keys of three tokens or more) were written.
func (c *countingKV) recordWrites() int {
	n := 0
	for _, k := range c.keys {
		if strings.Count(k, ".") >= 2 {
			n++
		}
	}
	return n
}
