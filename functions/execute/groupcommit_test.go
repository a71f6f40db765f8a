package execute_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"council.dev/functions/execute"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// slowStore is the in-memory store with reads that take a while (so that
// concurrent calls queue) and counted writes.
type slowStore struct {
	*counciltest.Store
	updates atomic.Int64
}

func (s *slowStore) Get(ctx context.Context, id string) (*council.Deliberation, uint64, error) {
	time.Sleep(5 * time.Millisecond)
	return s.Store.Get(ctx, id)
}

func (s *slowStore) Update(ctx context.Context, d *council.Deliberation, rev uint64) (uint64, error) {
	s.updates.Add(1)
	return s.Store.Update(ctx, d, rev)
}

// TestApplyCommitsConcurrentChangesTogether: the results of a stage
// arriving at once are applied in groups, each stored with one
// compare-and-set; every change is applied once, every caller answered,
// and a caller that gives up while queued leaves nothing stuck.
func TestApplyCommitsConcurrentChangesTogether(t *testing.T) {
	ctx := context.Background()
	store := &slowStore{Store: counciltest.NewStore()}
	task := counciltest.Task()
	task.Agents = nil
	for i := range 16 {
		task.Agents = append(task.Agents, council.Agent{ID: "agent-" + string(rune('a'+i)), Role: "DEV"})
	}
	d, err := council.New("dlb-group", task, t0)
	if err != nil {
		t.Fatal(err)
	}
	d.Outbox = nil
	if _, err := store.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	ob, err := execute.NewOutbox(store, &counciltest.Emitter{}, "council.dev/execute", func() time.Time { return t0 }, nil)
	if err != nil {
		t.Fatal(err)
	}

	// A caller that gives up at once while others hold the turn.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	var wg sync.WaitGroup
	for _, w := range d.Pending() {
		wg.Go(func() {
			if _, err := ob.Apply(ctx, d.ID, func(d *council.Deliberation) (bool, error) {
				return d.RecordProposal(w.Key, counciltest.ProposalFor(*w), t0)
			}); err != nil {
				t.Errorf("%s: %v", w.Key, err)
			}
		})
		wg.Go(func() {
			_, _ = ob.Apply(cancelled, d.ID, func(d *council.Deliberation) (bool, error) { return false, nil })
		})
	}
	wg.Wait()
	got, _, err := store.Get(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Proposals) != 16 || got.Phase != council.PhaseCritiquing {
		t.Fatalf("%d proposals, phase %s; want 16 and critiquing", len(got.Proposals), got.Phase)
	}
	// 16 changes: far fewer writes than one each (plus the outbox acks).
	if n := store.updates.Load(); n >= 16 {
		t.Errorf("%d compare-and-sets for 16 results arriving together, want them grouped", n)
	}
	t.Logf("16 results stored with %d compare-and-sets", store.updates.Load())
	// Nothing left waiting: a new call is applied at once.
	done := make(chan error, 1)
	go func() {
		_, err := ob.Apply(ctx, d.ID, func(*council.Deliberation) (bool, error) { return false, nil })
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a call after the burst is stuck")
	}
}

// TestApplyFromTheLastStateItStoredSeesOtherWriters: an outbox tries a
// change on what it stored last, without reading; when another writer (a
// second instance) stored something since, the compare-and-set fails and
// the change is decided again on a read: nothing of the other writer's is
// lost, and a change that only the fresh state makes possible is applied.
func TestApplyFromTheLastStateItStoredSeesOtherWriters(t *testing.T) {
	ctx := context.Background()
	store := &slowStore{Store: counciltest.NewStore()}
	d, err := council.New("dlb-two", counciltest.Task(), t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	now := func() time.Time { return t0 }
	a, _ := execute.NewOutbox(store, &counciltest.Emitter{}, "council.dev/execute", now, nil)
	b, _ := execute.NewOutbox(store, &counciltest.Emitter{}, "council.dev/execute", now, nil)
	record := func(ob *execute.Outbox, key string) {
		t.Helper()
		if _, err := ob.Apply(ctx, d.ID, func(d *council.Deliberation) (bool, error) {
			return d.RecordProposal(key, counciltest.ProposalFor(*d.Work[key]), t0)
		}); err != nil {
			t.Fatalf("%s: %v", key, err)
		}
	}
	keys := []string{}
	for _, w := range d.Pending() {
		keys = append(keys, w.Key)
	}
	record(a, keys[0]) // a remembers its state
	record(b, keys[1]) // b stores over it
	record(a, keys[2]) // a's remembered state is stale: re-read, nothing lost
	got, _, err := store.Get(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Proposals) != 3 || got.Phase != council.PhaseCritiquing {
		t.Fatalf("%d proposals, phase %s; want all 3 and critiquing", len(got.Proposals), got.Phase)
	}
	// And a sweep tick (no change on a fresh read) changes nothing.
	before := store.updates.Load()
	if _, err := a.Apply(ctx, d.ID, func(d *council.Deliberation) (bool, error) { return d.Tick(t0), nil }); err != nil {
		t.Fatal(err)
	}
	if store.updates.Load() != before {
		t.Error("a change that changes nothing was stored")
	}
}
