package natsjs_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/events"
	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// TestLargeStageKeepsItsHeaderSmall records the proposals of a 40-agent
// stage one by one through the store OpenStore returns (pipelined: records
// and header sent together): the header carries the pending work and fewer
// than 16 answered pieces (the others are in segment records), and a store
// that has seen nothing reads the same deliberation after every step.
func TestLargeStageKeepsItsHeaderSmall(t *testing.T) {
	e := newEnv(t)
	ctx := ctxTimeout(t)
	writer, err := natsjs.OpenStore(ctx, e.js)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := e.js.KeyValue(ctx, natsjs.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	task := counciltest.Task()
	task.Agents = make([]council.Agent, 40)
	for i := range task.Agents {
		task.Agents[i] = council.Agent{ID: fmt.Sprintf("agent-%02d", i), Role: "DEV"}
	}
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	d, err := council.New("dlb-large-stage", task, t0)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := writer.Create(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	pending := d.Pending()
	for i, w := range pending {
		if _, err := d.RecordProposal(w.Key, counciltest.ProposalFor(*w), t0.Add(time.Duration(i+1)*time.Second)); err != nil {
			t.Fatal(err)
		}
		if rev, err = writer.Update(ctx, d, rev); err != nil {
			t.Fatalf("after %d proposals: %v", i+1, err)
		}
		entry, err := kv.Get(ctx, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		b, err := events.StateHeaderJSON(entry.Value())
		if err != nil {
			t.Fatal(err)
		}
		var h struct {
			Work     []json.RawMessage `json:"work"`
			Segments []string          `json:"segments"`
		}
		if err := json.Unmarshal(b, &h); err != nil {
			t.Fatal(err)
		}
		if answered := len(h.Work) - len(d.Pending()); answered < 0 || answered >= 16 {
			t.Fatalf("after %d proposals the header carries %d work entries with %d pending: %d answered, want fewer than 16", i+1, len(h.Work), len(d.Pending()), answered)
		}
		if i+1 >= 16 && len(h.Segments) == 0 {
			t.Fatalf("after %d proposals the header names no segment", i+1)
		}
		cold, err := natsjs.NewStore(kv)
		if err != nil {
			t.Fatal(err)
		}
		got, gotRev, err := cold.Get(ctx, d.ID)
		if err != nil {
			t.Fatalf("after %d proposals, cold Get: %v", i+1, err)
		}
		if gotRev != rev {
			t.Fatalf("cold Get revision %d, want %d", gotRev, rev)
		}
		if diff := cmp.Diff(d, got, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("after %d proposals, read cold differs (-want +got):\n%s", i+1, diff)
		}
	}
	if d.Stage != 0 || len(d.Pending()) == 0 {
		t.Fatalf("after the proposals: stage %d with %d pending, want the critiques of stage 0 pending", d.Stage, len(d.Pending()))
	}
}

// TestPipelinedStoreNeverStoresAHeaderWithoutItsRecord: a record larger
// than the bucket's largest value is not pipelined with its header (the
// server would refuse the record and store the header); the update fails,
// the stored deliberation stays as it was, and the next update at the same
// revision succeeds.
func TestPipelinedStoreNeverStoresAHeaderWithoutItsRecord(t *testing.T) {
	e := newEnv(t)
	ctx := ctxTimeout(t)
	kv, err := e.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "small", MaxValueSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	s, err := natsjs.NewStore(kv, natsjs.WithPipeline(e.js))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	d, err := council.New("dlb-refused", counciltest.Task(), t0)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := s.Create(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	before := d.Clone()
	w := d.Pending()[0]
	p := counciltest.ProposalFor(*w)
	p.Content = strings.Repeat("long answer ", 1000) // about 12 KB: over the bucket's limit
	if _, err := d.RecordProposal(w.Key, p, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, d, rev); err == nil {
		t.Fatal("update naming a record over the bucket's limit succeeded")
	}
	cold, err := natsjs.NewStore(kv)
	if err != nil {
		t.Fatal(err)
	}
	got, gotRev, err := cold.Get(ctx, d.ID)
	if err != nil {
		t.Fatalf("Get after the refused update: %v", err)
	}
	if gotRev != rev {
		t.Errorf("revision %d after the refused update, want %d (unchanged)", gotRev, rev)
	}
	if diff := cmp.Diff(before, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("stored deliberation changed by the refused update (-want +got):\n%s", diff)
	}
	small := counciltest.ProposalFor(*w)
	if _, err := before.RecordProposal(w.Key, small, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, before, rev); err != nil {
		t.Fatalf("update at the same revision with a record that fits: %v", err)
	}
	if _, err := s.Update(ctx, before, rev); !errors.Is(err, council.ErrConflict) {
		t.Fatalf("update at a revision no longer current: error = %v, want council.ErrConflict", err)
	}
}

// TestByTaskFindsTheDeliberationsOfATask: the task index lists, for a task
// id (free text, hashed into the key), the deliberations created for it
// and no other.
func TestByTaskFindsTheDeliberationsOfATask(t *testing.T) {
	e := newEnv(t)
	ctx := ctxTimeout(t)
	s, err := natsjs.OpenStore(ctx, e.js)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	for id, taskID := range map[string]string{"dlb-a1": "story 7 / task: a.*", "dlb-a2": "story 7 / task: a.*", "dlb-b": "task-b"} {
		task := counciltest.Task()
		task.ID = taskID
		d, err := council.New(id, task, t0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Create(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.ByTask(ctx, "story 7 / task: a.*")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if diff := cmp.Diff([]string{"dlb-a1", "dlb-a2"}, got); diff != "" {
		t.Errorf("ByTask (-want +got):\n%s", diff)
	}
	if none, err := s.ByTask(ctx, "task-none"); err != nil || len(none) != 0 {
		t.Errorf("ByTask of a task without deliberations: %v, %v; want none", none, err)
	}
}
