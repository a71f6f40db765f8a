package natsjs_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/council"
)

func newStore(t *testing.T) *natsjs.Store {
	t.Helper()
	e := newEnv(t)
	kv, err := e.js.KeyValue(t.Context(), natsjs.DefaultBucket)
	if err != nil {
		t.Fatalf("bucket: %v", err)
	}
	s, err := natsjs.NewStore(kv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStoreCompareAndSet(t *testing.T) {
	s := newStore(t)
	ctx := ctxTimeout(t)
	d := &council.Deliberation{ID: "0af3-c9_1"}

	rev1, err := s.Create(ctx, d)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := s.Create(ctx, d); !errors.Is(err, council.ErrConflict) {
		t.Errorf("second Create = %v, want ErrConflict", err)
	}

	got, rev, err := s.Get(ctx, d.ID)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.ID != d.ID || rev != rev1 {
		t.Errorf("Get = (%q, %d), want (%q, %d)", got.ID, rev, d.ID, rev1)
	}

	rev2, err := s.Update(ctx, d, rev1)
	if err != nil {
		t.Fatalf("Update at current revision: %v", err)
	}
	if rev2 <= rev1 {
		t.Errorf("Update revision %d, want > %d", rev2, rev1)
	}
	if _, err := s.Update(ctx, d, rev1); !errors.Is(err, council.ErrConflict) {
		t.Errorf("Update at stale revision = %v, want ErrConflict", err)
	}
	if _, err := s.Update(ctx, &council.Deliberation{ID: "missing"}, rev2); !errors.Is(err, council.ErrConflict) {
		t.Errorf("Update of a missing id = %v, want ErrConflict", err)
	}
	if _, _, err := s.Get(ctx, "missing"); !errors.Is(err, council.ErrNotFound) {
		t.Errorf("Get(missing) = %v, want ErrNotFound", err)
	}
	if _, rev, _ := s.Get(ctx, d.ID); rev != rev2 {
		t.Errorf("revision after updates = %d, want %d", rev, rev2)
	}
}

func TestStoreList(t *testing.T) {
	s := newStore(t)
	ctx := ctxTimeout(t)

	got, err := s.List(ctx)
	if err != nil {
		t.Fatalf("List of an empty bucket: %v", err)
	}
	if got == nil || len(got) != 0 {
		t.Errorf("List of an empty bucket = %#v, want an empty slice", got)
	}

	for _, id := range []string{"b2", "a1", "c3"} {
		if _, err := s.Create(ctx, &council.Deliberation{ID: id}); err != nil {
			t.Fatalf("Create %s: %v", id, err)
		}
	}
	_, rev, err := s.Get(ctx, "a1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, &council.Deliberation{ID: "a1"}, rev); err != nil {
		t.Fatal(err)
	}

	got, err = s.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var ids []string
	for _, d := range got {
		ids = append(ids, d.ID)
	}
	slices.Sort(ids)
	if diff := cmp.Diff([]string{"a1", "b2", "c3"}, ids); diff != "" {
		t.Errorf("List ids (-want +got):\n%s", diff)
	}
}

func TestStoreRejectsInvalidInput(t *testing.T) {
	s := newStore(t)
	ctx := ctxTimeout(t)
	for name, call := range map[string]func() error{
		"get dotted id":    func() error { _, _, err := s.Get(ctx, "a.b"); return err },
		"get wildcard id":  func() error { _, _, err := s.Get(ctx, "a*"); return err },
		"get empty id":     func() error { _, _, err := s.Get(ctx, ""); return err },
		"create nil":       func() error { _, err := s.Create(ctx, nil); return err },
		"create slash id":  func() error { _, err := s.Create(ctx, &council.Deliberation{ID: "a/b"}); return err },
		"update empty id":  func() error { _, err := s.Update(ctx, &council.Deliberation{}, 1); return err },
		"update revision0": func() error { _, err := s.Update(ctx, &council.Deliberation{ID: "a"}, 0); return err },
	} {
		t.Run(name, func(t *testing.T) {
			if err := call(); !errors.Is(err, council.ErrInvalid) {
				t.Errorf("got %v, want ErrInvalid", err)
			}
		})
	}
}
