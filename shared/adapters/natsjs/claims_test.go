package natsjs_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

func openClaims(t *testing.T) *natsjs.Claims {
	t.Helper()
	e := newEnv(t)
	c, err := natsjs.OpenClaims(t.Context(), e.js)
	if err != nil {
		t.Fatalf("OpenClaims: %v", err)
	}
	return c
}

func TestClaimsLifecycle(t *testing.T) {
	c := openClaims(t)
	ctx := t.Context()
	key := council.ClaimKey("dlb-1", "p.0.dev-1", 1)
	first, err := c.Claim(ctx, key, time.Minute)
	if err != nil || first.State != council.ClaimTaken {
		t.Fatalf("first claim: %+v, %v; want taken", first, err)
	}
	dup, err := c.Claim(ctx, key, time.Minute)
	if err != nil || dup.State != council.ClaimInFlight {
		t.Fatalf("claim of work in flight: %+v, %v; want in flight", dup, err)
	}
	if err := c.Renew(ctx, &first, time.Minute); err != nil {
		t.Fatalf("Renew: %v", err)
	}
	// The duplicate's view is stale: it cannot answer or release.
	if err := c.Answer(ctx, &dup, []byte("x"), time.Minute); !errors.Is(err, council.ErrConflict) {
		t.Errorf("Answer with a stale claim: %v, want ErrConflict", err)
	}
	if err := c.Release(ctx, dup); !errors.Is(err, council.ErrConflict) {
		t.Errorf("Release with a stale claim: %v, want ErrConflict", err)
	}
	if err := c.Answer(ctx, &first, []byte(`{"reply":1}`), time.Minute); err != nil {
		t.Fatalf("Answer: %v", err)
	}
	got, err := c.Claim(ctx, key, time.Minute)
	if err != nil || got.State != council.ClaimAnswered || string(got.Reply) != `{"reply":1}` {
		t.Fatalf("claim of answered work: %+v, %v; want answered with the reply", got, err)
	}
	// Another attempt is other work.
	if other, err := c.Claim(ctx, council.ClaimKey("dlb-1", "p.0.dev-1", 2), time.Minute); err != nil || other.State != council.ClaimTaken {
		t.Fatalf("claim of attempt 2: %+v, %v; want taken", other, err)
	}
	// A released claim can be taken again.
	k3 := council.ClaimKey("dlb-1", "c.0.dev-1.qa-1", 1)
	cl, _ := c.Claim(ctx, k3, time.Minute)
	if err := c.Release(ctx, cl); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if again, err := c.Claim(ctx, k3, time.Minute); err != nil || again.State != council.ClaimTaken {
		t.Fatalf("claim after release: %+v, %v; want taken", again, err)
	}
}

func TestClaimsLeaseExpiresUnlessRenewed(t *testing.T) {
	c := openClaims(t)
	ctx := t.Context()
	crashed, renewed := council.ClaimKey("dlb-2", "p.0.a", 1), council.ClaimKey("dlb-2", "p.0.b", 1)
	if _, err := c.Claim(ctx, crashed, time.Second); err != nil {
		t.Fatal(err)
	}
	kept, err := c.Claim(ctx, renewed, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// The holder of crashed is gone; the other renews its claim.
	var failed error
	freed := counciltest.Within(3*time.Second, 200*time.Millisecond, func() bool {
		if err := c.Renew(ctx, &kept, time.Second); err != nil && failed == nil {
			failed = err
		}
		got, err := c.Claim(ctx, crashed, time.Minute)
		return err == nil && got.State == council.ClaimTaken
	})
	if failed != nil {
		t.Fatalf("Renew: %v", failed)
	}
	if !freed {
		t.Fatal("the claim of a crashed holder did not expire within 3 s of its 1 s lease")
	}
	if got, err := c.Claim(ctx, renewed, time.Minute); err != nil || got.State != council.ClaimInFlight {
		t.Fatalf("renewed claim: %+v, %v; want still in flight", got, err)
	}
}

func TestClaimedRunsWorkOnceAcrossHandlers(t *testing.T) {
	c := openClaims(t)
	var calls atomic.Int32
	release := make(chan struct{})
	work := func(context.Context) ([]byte, error) {
		calls.Add(1)
		<-release
		return []byte("the reply"), nil
	}
	key := council.ClaimKey("dlb-3", "p.0.dev-1", 1)
	const handlers = 6
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		replies [][]byte
		ran     int
		done    int
	)
	for range handlers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reply, r, err := council.Claimed(t.Context(), c, key, time.Minute, func(err error) { t.Error(err) }, work)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			defer mu.Unlock()
			done++
			if r {
				ran++
			}
			if reply != nil {
				replies = append(replies, reply)
			}
		}()
	}
	// One handler runs the work; the duplicates wait for its answer.
	if !counciltest.Within(10*time.Second, 10*time.Millisecond, func() bool { return calls.Load() == 1 }) {
		t.Fatal("no handler ran the work")
	}
	close(release)
	wg.Wait()
	if calls.Load() != 1 || ran != 1 || len(replies) != handlers || done != handlers {
		t.Fatalf("work ran %d times (ran=%d), %d replies; want once, the reply to each of the %d handlers", calls.Load(), ran, len(replies), handlers)
	}
	for _, r := range replies {
		if string(r) != "the reply" {
			t.Errorf("reply %q, want the holder's", r)
		}
	}
	// A later duplicate gets the stored reply without running work.
	reply, r, err := council.Claimed(t.Context(), c, key, time.Minute, nil, work)
	if err != nil || r || string(reply) != "the reply" || calls.Load() != 1 {
		t.Fatalf("late duplicate: %q ran=%v err=%v calls=%d; want the stored reply, no call", reply, r, err, calls.Load())
	}
	// Failed work releases its claim: the next delivery runs it.
	k2 := council.ClaimKey("dlb-3", "p.0.qa-1", 1)
	if _, _, err := council.Claimed(t.Context(), c, k2, time.Minute, nil, func(context.Context) ([]byte, error) {
		return nil, context.Canceled
	}); !errors.Is(err, context.Canceled) {
		t.Fatalf("failed work: %v", err)
	}
	if _, r, err := council.Claimed(t.Context(), c, k2, time.Minute, nil, work); err != nil || !r {
		t.Fatalf("after a failure: ran=%v err=%v; want the work run again", r, err)
	}
}
