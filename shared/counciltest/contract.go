package counciltest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

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

// TestStore is the contract every council.Store must pass. newStore
// returns an empty store.
func TestStore(t *testing.T, newStore func(t *testing.T) council.Store) {
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
}
