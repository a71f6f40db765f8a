package counciltest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"council.dev/shared/council"
)

// Task returns a valid 3-agent deliberation task.
func Task() council.Task {
	return council.Task{
		ID: "task-1", Description: "Design the login flow.", Role: "ARCHITECT", Kind: council.KindDeliberation,
		Constraints: council.Constraints{StoryID: "ST-1", PlanID: "PL-1", MaxRetries: 1},
		Agents: []council.Agent{
			{ID: "agent-architect-001", Role: "ARCHITECT"},
			{ID: "agent-qa-001", Role: "QA"},
			{ID: "agent-devops-001", Role: "DEVOPS"},
		},
		Model: "council-tiny",
	}
}

// StoreUnderTest is a store for the contract suite: the store, empty, and
// a way to spoil the stored value of a deliberation so that it no longer
// decodes.
type StoreUnderTest struct {
	council.Store
	Corrupt func(t *testing.T, id string)
}

// TestStore is the contract every council.Store must pass. newStore
// returns an empty store.
func TestStore(t *testing.T, newStore func(t *testing.T) StoreUnderTest) {
	ctx := context.Background()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	t.Run("get unknown is not found", func(t *testing.T) {
		s := newStore(t)
		if _, _, err := s.Get(ctx, "dlb-unknown"); !errors.Is(err, council.ErrNotFound) {
			t.Fatalf("Get(unknown) error = %v, want ErrNotFound", err)
		}
	})
	t.Run("create then get round-trips", func(t *testing.T) {
		s := newStore(t)
		d, err := council.New("dlb-roundtrip", Task(), now)
		if err != nil {
			t.Fatal(err)
		}
		rev, err := s.Create(ctx, d)
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		got, gotRev, err := s.Get(ctx, d.ID)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if gotRev != rev {
			t.Errorf("revision = %d, want %d", gotRev, rev)
		}
		if diff := cmp.Diff(d, got); diff != "" {
			t.Errorf("stored deliberation differs (-want +got):\n%s", diff)
		}
	})
	t.Run("create twice conflicts", func(t *testing.T) {
		s := newStore(t)
		d, _ := council.New("dlb-twice", Task(), now)
		if _, err := s.Create(ctx, d); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Create(ctx, d); !errors.Is(err, council.ErrConflict) {
			t.Fatalf("second Create error = %v, want ErrConflict", err)
		}
	})
	t.Run("update compares and sets", func(t *testing.T) {
		s := newStore(t)
		d, _ := council.New("dlb-cas", Task(), now)
		rev, err := s.Create(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		d.Acknowledge(d.Outbox[0])
		rev2, err := s.Update(ctx, d, rev)
		if err != nil {
			t.Fatalf("Update at current revision: %v", err)
		}
		if rev2 == rev {
			t.Errorf("revision did not change after Update")
		}
		if _, err := s.Update(ctx, d, rev); !errors.Is(err, council.ErrConflict) {
			t.Fatalf("Update at stale revision error = %v, want ErrConflict", err)
		}
		got, _, err := s.Get(ctx, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(d.Outbox, got.Outbox); diff != "" {
			t.Errorf("outbox after update (-want +got):\n%s", diff)
		}
	})
	t.Run("list returns every stored deliberation", func(t *testing.T) {
		s := newStore(t)
		if all, err := s.List(ctx); err != nil || len(all) != 0 {
			t.Fatalf("List of an empty store = %d, %v; want none", len(all), err)
		}
		want := []string{"dlb-list-a", "dlb-list-b", "dlb-list-c"}
		for _, id := range want {
			d, _ := council.New(id, Task(), now)
			if _, err := s.Create(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		all, err := s.List(ctx)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		var got []string
		for _, d := range all {
			got = append(got, d.ID)
		}
		slices.Sort(got)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("listed ids (-want +got):\n%s", diff)
		}
	})
	t.Run("an id the store cannot hold is invalid", func(t *testing.T) {
		s := newStore(t)
		for _, id := range []string{"", "a.*.>", "dlb/1", "dlb 1", strings.Repeat("x", 256)} {
			if _, _, err := s.Get(ctx, id); !errors.Is(err, council.ErrInvalid) {
				t.Errorf("Get(%q) error = %v, want ErrInvalid", id, err)
			}
			d, _ := council.New("dlb-ok", Task(), now)
			d.ID = id
			if _, err := s.Create(ctx, d); !errors.Is(err, council.ErrInvalid) {
				t.Errorf("Create(%q) error = %v, want ErrInvalid", id, err)
			}
			if _, err := s.Update(ctx, d, 1); !errors.Is(err, council.ErrInvalid) {
				t.Errorf("Update(%q) error = %v, want ErrInvalid", id, err)
			}
		}
	})
	t.Run("a whole deliberation round-trips, step by step", func(t *testing.T) {
		s := newStore(t)
		for _, kind := range []council.Kind{council.KindDeliberation, council.KindTaskExtraction} {
			task := Task()
			task.Kind = kind
			if kind.SinglePass() {
				task.Agents = task.Agents[:1]
			}
			d, err := council.New("dlb-steps-"+strings.ReplaceAll(string(kind), "_", "-"), task, now)
			if err != nil {
				t.Fatal(err)
			}
			rev, err := s.Create(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			for step := 0; !d.Status.Terminal(); step++ {
				if step > 100 {
					t.Fatal("the deliberation does not end")
				}
				// One result at a time, stored and read back each time.
				k := d.Outbox[0]
				d.Acknowledge(k)
				if w, ok := d.Work[k]; ok {
					if w.Kind == council.WorkProposal {
						_, err = d.RecordProposal(k, ProposalFor(*w), now.Add(time.Second))
					} else {
						_, err = d.RecordCritique(k, CritiqueFor(*w, d.Task.Constraints.Rubric), now.Add(time.Second))
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				if rev, err = s.Update(ctx, d, rev); err != nil {
					t.Fatalf("step %d: Update: %v", step, err)
				}
				got, gotRev, err := s.Get(ctx, d.ID)
				if err != nil {
					t.Fatalf("step %d: Get: %v", step, err)
				}
				if gotRev != rev {
					t.Fatalf("step %d: revision %d, want %d", step, gotRev, rev)
				}
				if diff := cmp.Diff(d, got, cmpopts.EquateEmpty()); diff != "" {
					t.Fatalf("step %d: stored deliberation differs (-want +got):\n%s", step, diff)
				}
				d = got
			}
			if d.Result == nil || len(d.Result.Ranking) == 0 {
				t.Fatalf("%s ended %s without a ranking: %s", kind, d.Status, d.Reason)
			}
		}
	})
	t.Run("active lists what owes something", func(t *testing.T) {
		s := newStore(t)
		running, _ := council.New("dlb-active-running", Task(), now)
		owing, _ := council.New("dlb-active-owing", Task(), now)
		done, _ := council.New("dlb-active-done", Task(), now)
		for _, d := range []*council.Deliberation{running, owing, done} {
			if _, err := s.Create(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		for _, d := range []*council.Deliberation{owing, done} {
			_, rev, err := s.Get(ctx, d.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !d.Fail("timeout", now.Add(time.Minute)) {
				t.Fatal("Fail changed nothing")
			}
			if d == done {
				for len(d.Outbox) > 0 {
					d.Acknowledge(d.Outbox[0])
				}
			}
			if _, err := s.Update(ctx, d, rev); err != nil {
				t.Fatal(err)
			}
		}
		active, err := s.Active(ctx)
		if err != nil {
			t.Fatalf("Active: %v", err)
		}
		if diff := cmp.Diff([]string{"dlb-active-owing", "dlb-active-running"}, ids(active)); diff != "" {
			t.Errorf("active ids (-want +got):\n%s", diff)
		}
		all, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 3 {
			t.Errorf("List = %d deliberations, want 3", len(all))
		}
	})
	t.Run("ends are counted once", func(t *testing.T) { testTally(t, newStore(t), now) })
	t.Run("a value that does not decode is set aside, the others go on", func(t *testing.T) {
		su := newStore(t)
		for _, id := range []string{"dlb-bad", "dlb-good"} {
			d, _ := council.New(id, Task(), now)
			if _, err := su.Create(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		su.Corrupt(t, "dlb-bad")
		if _, _, err := su.Get(ctx, "dlb-bad"); !errors.Is(err, council.ErrInvalid) {
			t.Errorf("Get of a spoiled value error = %v, want ErrInvalid", err)
		}
		for name, list := range map[string]func(context.Context) ([]*council.Deliberation, error){"List": su.List, "Active": su.Active} {
			got, err := list(ctx)
			if err != nil {
				t.Fatalf("%s with a spoiled value: %v", name, err)
			}
			if diff := cmp.Diff([]string{"dlb-good"}, ids(got)); diff != "" {
				t.Errorf("%s ids (-want +got):\n%s", name, diff)
			}
		}
		q, err := su.Quarantined(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(q) != 1 || q[0].ID != "dlb-bad" || q[0].Reason == "" {
			t.Errorf("Quarantined = %+v, want dlb-bad with a reason", q)
		}
	})
}

func testTally(t *testing.T, s council.Store, now time.Time) {
	ctx := context.Background()
	empty, err := s.Tally(ctx)
	if err != nil || empty.Ended() != 0 {
		t.Fatalf("Tally of an empty store = %+v, %v; want nothing counted", empty, err)
	}
	d, _ := council.New("dlb-tally", Task(), now)
	if err := s.CountEnd(ctx, d); err != nil {
		t.Fatalf("CountEnd of a running deliberation: %v", err)
	}
	d.Fail("timeout", now.Add(3*time.Second))
	for range 2 { // a retried step counts the same end again
		if err := s.CountEnd(ctx, d); err != nil {
			t.Fatalf("CountEnd: %v", err)
		}
	}
	got, err := s.Tally(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.Failed != 1 || got.Completed != 0 || got.Mean() != 3*time.Second {
		t.Errorf("Tally = %d completed, %d failed, mean %s; want 0, 1, 3s", got.Completed, got.Failed, got.Mean())
	}
}

func ids(ds []*council.Deliberation) []string {
	out := []string{}
	for _, d := range ds {
		out = append(out, d.ID)
	}
	slices.Sort(out)
	return out
}
