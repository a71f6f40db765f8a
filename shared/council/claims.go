package council

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// ClaimState says what a work claim found.
type ClaimState int

// Claim states.
const (
	// ClaimTaken: the claim is the caller's; it does the work.
	ClaimTaken ClaimState = iota + 1
	// ClaimInFlight: another handler holds the work and is doing it.
	ClaimInFlight
	// ClaimAnswered: the work was done; Claim.Reply is its reply.
	ClaimAnswered
)

// Claim is a work claim: who does one work item (a deliberation's work key
// at one attempt), and, once done, its reply.
type Claim struct {
	Key   string
	State ClaimState
	// Reply is the stored reply of answered work.
	Reply []byte
	// Revision is the claim's revision (compare-and-set), the store's own.
	Revision uint64
}

// WorkClaims is the port of work claims, which keep a duplicated work
// event (proposal.requested, critique.requested with the same deliberation,
// key and attempt) from calling the LLM again.
//
// Claim takes key for lease when nobody holds it (atomically: of two
// handlers, one gets ClaimTaken), and otherwise reports ClaimInFlight or
// ClaimAnswered with the stored reply. A taken claim expires after lease
// unless renewed (Renew), so that the claim of a crashed handler frees
// its work for a redelivery. Answer stores the reply of taken work and
// keeps it for keep; Release gives up a taken claim. Renew, Answer and
// Release return an error wrapping ErrConflict when the claim is no longer
// the caller's. All return ErrUnavailable when the store cannot be reached.
type WorkClaims interface {
	Claim(ctx context.Context, key string, lease time.Duration) (Claim, error)
	Renew(ctx context.Context, c *Claim, lease time.Duration) error
	Answer(ctx context.Context, c *Claim, reply []byte, keep time.Duration) error
	Release(ctx context.Context, c Claim) error
}

// ClaimKey is the claim key of attempt of work key of deliberation id: its
// parts checked by CheckWorkIDs, dot-separated.
func ClaimKey(deliberationID, key string, attempt int) string {
	return fmt.Sprintf("%s.%s.%d", deliberationID, key, attempt)
}

// Claim timings: a taken claim lasts ClaimLease and is renewed every third
// of it while its work runs; an answer is kept until the work's deadline,
// at least ClaimKeepMin, or ClaimKeepNoDeadline for work without one.
const (
	ClaimLease = 15 * time.Second
	// ClaimPoll is how often a duplicate of work in flight looks at its
	// claim again.
	ClaimPoll           = time.Second
	ClaimKeepMin        = time.Minute
	ClaimKeepNoDeadline = time.Hour
)

// ClaimKeep is how long the answer of work with deadline is kept at now:
// until the deadline (no duplicate can call the LLM after it: PastDeadline),
// at least ClaimKeepMin; ClaimKeepNoDeadline without one.
func ClaimKeep(deadline, now time.Time) time.Duration {
	if deadline.IsZero() {
		return ClaimKeepNoDeadline
	}
	return max(deadline.Sub(now), ClaimKeepMin)
}

// Claimed runs work once per claim key among every handler that shares
// claims: the first to claim key runs work and stores its reply (when work
// returns one); a duplicate that finds the work answered gets the stored
// reply without running work. One that finds it in flight waits, looking
// at the claim every ClaimPoll, until it is answered (the stored reply) or
// its lease ends — its holder crashed — and then takes the work over: a
// duplicate never drops work, so the redelivery of a crashed holder's event
// does it. While work runs its claim is renewed. When work fails (err) the
// claim is released, so that a redelivery may take over; a ctx that ends
// while waiting returns ctx's error, wrapping ErrUnavailable.
//
// Claims are an economy, not a lock of correctness: with claims nil, or
// when the store cannot be reached, work runs unclaimed (report receives
// the store's errors; it may be nil).
func Claimed(ctx context.Context, claims WorkClaims, key string, keep time.Duration, report func(error),
	work func(ctx context.Context) ([]byte, error),
) (reply []byte, ran bool, err error) {
	if claims == nil {
		reply, err = work(ctx)
		return reply, true, err
	}
	if report == nil {
		report = func(error) {}
	}
	c, err := claims.Claim(ctx, key, ClaimLease)
	if err != nil {
		report(fmt.Errorf("claim %s: %w", key, err))
		reply, err = work(ctx)
		return reply, true, err
	}
	if c.State == ClaimInFlight {
		if c, err = awaitClaim(ctx, claims, key); err != nil {
			return nil, false, err
		}
	}
	if c.State == ClaimAnswered {
		return c.Reply, false, nil
	}
	var (
		mu   sync.Mutex
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(ClaimLease / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				mu.Lock()
				rerr := claims.Renew(ctx, &c, ClaimLease)
				mu.Unlock()
				if rerr != nil {
					report(fmt.Errorf("renew claim %s: %w", key, rerr))
				}
			}
		}
	}()
	reply, err = work(ctx)
	close(done)
	wg.Wait()
	// The claim's last changes outlive a cancelled ctx: a claim left
	// taken would hold the work until its lease ends.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err == nil && reply != nil {
		aerr := claims.Answer(sctx, &c, reply, keep)
		if aerr == nil {
			return reply, true, nil
		}
		report(fmt.Errorf("answer claim %s: %w", key, aerr))
	}
	if rerr := claims.Release(sctx, c); rerr != nil {
		report(fmt.Errorf("release claim %s: %w", key, rerr))
	}
	return reply, true, err
}

// awaitClaim looks at the claim of work in flight every ClaimPoll until it
// is answered or taken (its lease ended).
func awaitClaim(ctx context.Context, claims WorkClaims, key string) (Claim, error) {
	t := time.NewTicker(ClaimPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return Claim{}, fmt.Errorf("claim %s: %w: %w while the work was in flight elsewhere", key, ErrUnavailable, ctx.Err())
		case <-t.C:
		}
		c, err := claims.Claim(ctx, key, ClaimLease)
		if err != nil {
			if ctx.Err() != nil {
				continue // reported by the next turn
			}
			return Claim{}, fmt.Errorf("claim %s: %w", key, err)
		}
		if c.State != ClaimInFlight {
			return c, nil
		}
	}
}
