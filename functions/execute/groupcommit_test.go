package execute_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"council.dev/functions/execute"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// gatedStore is the in-memory store with counted writes, whose reads wait
// until gate is closed (nil: no gate); entered hears of each read as it
// starts.
type gatedStore struct {
	*counciltest.Store
	updates atomic.Int64
	gate    chan struct{}
	entered chan struct{}
}

func (s *gatedStore) Get(ctx context.Context, id string) (*council.Deliberation, uint64, error) {
	if s.gate != nil {
		select {
		case s.entered <- struct{}{}:
		default:
		}
		<-s.gate
	}
	return s.Store.Get(ctx, id)
}

func (s *gatedStore) Update(ctx context.Context, d *council.Deliberation, rev uint64) (uint64, error) {
	s.updates.Add(1)
	return s.Store.Update(ctx, d, rev)
}

// waitFor polls cond until it holds, failing after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
	}
}

// TestApplyCommitsConcurrentChangesTogether: results of a stage that
// arrive while one is being applied wait in the deliberation's queue and
// are then applied as one group, stored with one compare-and-set; every
// change is applied once, every caller answered, and a caller that gives up
// while queued leaves the queue.
func TestApplyCommitsConcurrentChangesTogether(t *testing.T) {
	ctx := context.Background()
	store := &gatedStore{Store: counciltest.NewStore(), gate: make(chan struct{}), entered: make(chan struct{}, 64)}
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
	var wg sync.WaitGroup
	record := func(w *council.Work) {
		wg.Go(func() {
			if _, err := ob.Apply(ctx, d.ID, func(d *council.Deliberation) (bool, error) {
				return d.RecordProposal(w.Key, counciltest.ProposalFor(*w), t0)
			}); err != nil {
				t.Errorf("%s: %v", w.Key, err)
			}
		})
	}
	pending := d.Pending()
	// The first result takes the turn and reads (held at the gate); the
	// 15 others queue behind it.
	record(pending[0])
	<-store.entered
	for _, w := range pending[1:] {
		record(w)
	}
	waitFor(t, "15 queued calls", func() bool { return execute.Queued(ob, d.ID) == 15 })
	// A caller that gives up while queued leaves the queue.
	cancelled, cancel := context.WithCancel(ctx)
	gaveUp := make(chan error, 1)
	go func() {
		_, err := ob.Apply(cancelled, d.ID, func(*council.Deliberation) (bool, error) { return false, nil })
		gaveUp <- err
	}()
	waitFor(t, "the 16th queued call", func() bool { return execute.Queued(ob, d.ID) == 16 })
	cancel()
	if err := <-gaveUp; !errors.Is(err, council.ErrUnavailable) {
		t.Errorf("a caller that gave up: %v, want ErrUnavailable (its event comes again)", err)
	}
	if n := execute.Queued(ob, d.ID); n != 15 {
		t.Fatalf("%d queued after a caller gave up, want 15", n)
	}
	close(store.gate) // this read, and every one after it, passes
	wg.Wait()

	got, _, err := store.Get(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Proposals) != 16 || got.Phase != council.PhaseCritiquing {
		t.Fatalf("%d proposals, phase %s; want 16 and critiquing", len(got.Proposals), got.Phase)
	}
	// The first result, then the 15 others in one group; the outbox clears
	// its sent critique requests with one more.
	if n := store.updates.Load(); n > 3 {
		t.Errorf("%d compare-and-sets for 16 results, want 3 at most: the first, the group of 15, the outbox", n)
	}
	if n := execute.Queued(ob, d.ID); n != 0 {
		t.Errorf("%d calls left queued", n)
	}
}

// TestApplyFromTheLastStateItStoredSeesOtherWriters: an outbox tries a
// change on what it stored last, without reading; when another writer (a
// second instance) stored something since, the compare-and-set fails and
// the change is decided again on a read: nothing of the other writer's is
// lost, and a change that only the fresh state makes possible is applied.
func TestApplyFromTheLastStateItStoredSeesOtherWriters(t *testing.T) {
	ctx := context.Background()
	store := &gatedStore{Store: counciltest.NewStore()}
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
