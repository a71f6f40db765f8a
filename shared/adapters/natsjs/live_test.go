package natsjs_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/council"
)

// tokenLog reads every token message of a deliberation in the stream, in
// order, with its stream sequence.
func tokenLog(t *testing.T, js jetstream.JetStream, id string, after uint64, n int) ([]council.TokenChunk, []uint64) {
	t.Helper()
	feed, err := natsjs.NewTokenFeed(js)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var (
		got  []council.TokenChunk
		seqs []uint64
	)
	errDone := errors.New("done")
	err = feed.Follow(ctx, id, after, func(c council.TokenChunk, seq uint64) error {
		got, seqs = append(got, c), append(seqs, seq)
		if len(got) == n {
			return errDone
		}
		return nil
	})
	if !errors.Is(err, errDone) {
		t.Fatalf("Follow read %d of %d messages: %v", len(got), n, err)
	}
	return got, seqs
}

func TestTokenPublisherCoalesces(t *testing.T) {
	e := newEnv(t)
	ctx := ctxTimeout(t)
	// No timer within the test: only size and the final chunk send.
	p, err := natsjs.NewTokenPublisher(e.nc, natsjs.WithCoalescing(time.Hour, 8))
	if err != nil {
		t.Fatal(err)
	}
	chunk := func(attempt, seq int, text string, final bool) council.TokenChunk {
		return council.TokenChunk{DeliberationID: "dlb-co", AgentID: "a1", Stage: 0, Attempt: attempt, Seq: seq, Text: text, Final: final}
	}
	for _, c := range []council.TokenChunk{
		chunk(1, 1, "Hel", false), chunk(1, 2, "lo ", false),
		chunk(2, 1, "Bon", false), // a retry streams apart
		chunk(1, 3, "wor", false), // 9 bytes: sent
		chunk(1, 4, "ld", false), chunk(1, 5, "", true),
		chunk(2, 2, "jour", false), chunk(2, 3, "", true),
	} {
		if err := p.PublishToken(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := tokenLog(t, e.js, "dlb-co", 0, 5)
	want := []council.TokenChunk{
		chunk(1, 3, "Hello wor", false),
		chunk(1, 4, "ld", false), chunk(1, 5, "", true),
		chunk(2, 2, "Bonjour", false), chunk(2, 3, "", true),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("coalesced messages (-want +got):\n%s", diff)
	}
}

func TestTokenPublisherSendsWhatWaitsAfterTheInterval(t *testing.T) {
	e := newEnv(t)
	p, err := natsjs.NewTokenPublisher(e.nc, natsjs.WithCoalescing(20*time.Millisecond, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range []string{"a", "b", "c"} {
		c := council.TokenChunk{DeliberationID: "dlb-tm", AgentID: "a1", Attempt: 1, Seq: i + 1, Text: s}
		if err := p.PublishToken(ctxTimeout(t), c); err != nil {
			t.Fatal(err)
		}
	}
	// No final chunk: the timer sends the text.
	got, _ := tokenLog(t, e.js, "dlb-tm", 0, 1)
	if got[0].Text != "abc" || got[0].Seq != 3 {
		t.Errorf("timed message %+v, want text abc, seq 3", got[0])
	}
	if err := p.Flush(); err != nil {
		t.Errorf("Flush with nothing waiting: %v", err)
	}
}

func TestTokenPublisherIsSafeForConcurrentCompletions(t *testing.T) {
	e := newEnv(t)
	p, err := natsjs.NewTokenPublisher(e.nc, natsjs.WithCoalescing(time.Millisecond, 16))
	if err != nil {
		t.Fatal(err)
	}
	const agents, pieces = 4, 200
	var wg sync.WaitGroup
	for a := range agents {
		wg.Go(func() {
			for i := 1; i <= pieces; i++ {
				c := council.TokenChunk{DeliberationID: "dlb-cc", AgentID: "a" + string(rune('0'+a)), Attempt: 1, Seq: i, Text: "x"}
				if err := p.PublishToken(t.Context(), c); err != nil {
					t.Error(err)
					return
				}
			}
			_ = p.PublishToken(t.Context(), council.TokenChunk{DeliberationID: "dlb-cc", AgentID: "a" + string(rune('0'+a)), Attempt: 1, Seq: pieces + 1, Final: true})
		})
	}
	wg.Wait()
	feed, err := natsjs.NewTokenFeed(e.js)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	text := map[string]*strings.Builder{}
	lastSeq := map[string]int{}
	finals, n := 0, 0
	errDone := errors.New("done")
	err = feed.Follow(ctx, "dlb-cc", 0, func(c council.TokenChunk, _ uint64) error {
		n++
		if c.Seq <= lastSeq[c.AgentID] {
			return fmt.Errorf("agent %s: seq %d after %d", c.AgentID, c.Seq, lastSeq[c.AgentID])
		}
		lastSeq[c.AgentID] = c.Seq
		if text[c.AgentID] == nil {
			text[c.AgentID] = &strings.Builder{}
		}
		text[c.AgentID].WriteString(c.Text)
		if c.Final {
			finals++
		}
		if finals == agents {
			return errDone
		}
		return nil
	})
	if !errors.Is(err, errDone) {
		t.Fatalf("Follow: %v", err)
	}
	if finals != agents {
		t.Errorf("%d final messages, want %d", finals, agents)
	}
	for a, b := range text {
		if b.Len() != pieces {
			t.Errorf("agent %s: %d bytes reassembled, want %d", a, b.Len(), pieces)
		}
	}
	if n >= agents*(pieces+1) {
		t.Errorf("%d messages for %d pieces: nothing coalesced", n, agents*(pieces+1))
	}
}

func TestTokenFeedResumesAfterASequence(t *testing.T) {
	e := newEnv(t)
	p, err := natsjs.NewTokenPublisher(e.nc, natsjs.WithCoalescing(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	feed, err := natsjs.NewTokenFeed(e.js)
	if err != nil {
		t.Fatal(err)
	}
	if last, err := feed.Last(t.Context(), "dlb-rs"); err != nil || last != 0 {
		t.Fatalf("Last of a deliberation without tokens = %d, %v; want 0, nil", last, err)
	}
	for i, a := range []string{"a1", "a2", "a1", "a2"} {
		if err := p.PublishToken(ctxTimeout(t), council.TokenChunk{DeliberationID: "dlb-rs", AgentID: a, Attempt: 1, Seq: i + 1, Text: a}); err != nil {
			t.Fatal(err)
		}
		// Another deliberation's tokens in between.
		if err := p.PublishToken(ctxTimeout(t), council.TokenChunk{DeliberationID: "dlb-other", AgentID: a, Attempt: 1, Seq: i + 1, Text: "z"}); err != nil {
			t.Fatal(err)
		}
	}
	all, seqs := tokenLog(t, e.js, "dlb-rs", 0, 4)
	rest, restSeqs := tokenLog(t, e.js, "dlb-rs", seqs[1], 2)
	if diff := cmp.Diff(all[2:], rest); diff != "" {
		t.Errorf("resumed after %d (-want +got):\n%s", seqs[1], diff)
	}
	if diff := cmp.Diff(seqs[2:], restSeqs); diff != "" {
		t.Errorf("resumed sequences (-want +got):\n%s", diff)
	}
	last, err := feed.Last(t.Context(), "dlb-rs")
	if err != nil || last != seqs[3] {
		t.Errorf("Last = %d, %v; want %d", last, err, seqs[3])
	}
	if _, err := feed.Last(t.Context(), "a.b"); !errors.Is(err, council.ErrInvalid) {
		t.Errorf("Last of a dotted id = %v, want ErrInvalid", err)
	}
}

func TestStoreWatchSeesEachRevision(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	d := &council.Deliberation{ID: "dlb-watch", Status: council.StatusRunning}
	rev1, err := s.Create(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan uint64, 8)
	errEnded := errors.New("ended")
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(ctx, d.ID, func(got *council.Deliberation, rev uint64) error {
			seen <- rev
			if got.Status == council.StatusFailed {
				return errEnded
			}
			return nil
		})
	}()
	if rev := <-seen; rev != rev1 {
		t.Fatalf("first revision %d, want the current %d", rev, rev1)
	}
	d.Status, d.Reason = council.StatusFailed, "test"
	rev2, err := s.Update(ctx, d, rev1)
	if err != nil {
		t.Fatal(err)
	}
	if rev := <-seen; rev != rev2 {
		t.Errorf("next revision %d, want %d", rev, rev2)
	}
	if err := <-done; !errors.Is(err, errEnded) {
		t.Errorf("Watch = %v, want fn's error", err)
	}
	if err := s.Watch(ctx, "a.b", nil); !errors.Is(err, council.ErrInvalid) {
		t.Errorf("Watch of a dotted id = %v, want ErrInvalid", err)
	}
}
