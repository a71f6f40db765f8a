package council_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"council.dev/shared/council"
)

// memClaims is an in-memory council.WorkClaims for the use case's tests;
// the adapter (natsjs.Claims) is tested on NATS.
type memClaims struct {
	mu     sync.Mutex
	claims map[string]council.Claim
	fail   error
}

func (m *memClaims) Claim(_ context.Context, key string, _ time.Duration) (council.Claim, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return council.Claim{}, m.fail
	}
	if c, ok := m.claims[key]; ok {
		if c.State == council.ClaimTaken {
			c.State = council.ClaimInFlight
		}
		return c, nil
	}
	c := council.Claim{Key: key, State: council.ClaimTaken, Revision: 1}
	m.claims[key] = c
	return c, nil
}

func (m *memClaims) Renew(context.Context, *council.Claim, time.Duration) error { return nil }

func (m *memClaims) Answer(_ context.Context, c *council.Claim, reply []byte, _ time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c.State, c.Reply = council.ClaimAnswered, reply
	m.claims[c.Key] = *c
	return nil
}

func (m *memClaims) Release(_ context.Context, c council.Claim) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.claims, c.Key)
	return nil
}

func TestClaimed(t *testing.T) {
	m := &memClaims{claims: map[string]council.Claim{}}
	calls := 0
	work := func(context.Context) ([]byte, error) { calls++; return []byte("r"), nil }
	key := council.ClaimKey("dlb-1", "p.0.a", 1)
	if key != "dlb-1.p.0.a.1" {
		t.Errorf("ClaimKey = %q", key)
	}
	if r, ran, err := council.Claimed(t.Context(), m, key, time.Minute, nil, work); err != nil || !ran || string(r) != "r" {
		t.Fatalf("first: %q %v %v", r, ran, err)
	}
	if r, ran, err := council.Claimed(t.Context(), m, key, time.Minute, nil, work); err != nil || ran || string(r) != "r" || calls != 1 {
		t.Fatalf("duplicate: %q ran=%v %v, %d calls; want the stored reply, 1 call", r, ran, err, calls)
	}
	// In flight elsewhere: the duplicate waits for the holder's answer.
	m.mu.Lock()
	m.claims["k2"] = council.Claim{Key: "k2", State: council.ClaimTaken, Revision: 1}
	m.mu.Unlock()
	type result struct {
		reply []byte
		ran   bool
		err   error
	}
	got := make(chan result, 1)
	go func() {
		r, ran, err := council.Claimed(t.Context(), m, "k2", time.Minute, nil, work)
		got <- result{r, ran, err}
	}()
	holder := council.Claim{Key: "k2", State: council.ClaimTaken, Revision: 1}
	if err := m.Answer(t.Context(), &holder, []byte("holder's"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r.err != nil || r.ran || string(r.reply) != "holder's" || calls != 1 {
		t.Fatalf("in flight: %q ran=%v %v, %d calls; want the holder's reply, no call", r.reply, r.ran, r.err, calls)
	}
	// A holder gone: its claim ends, and the duplicate does the work.
	m.mu.Lock()
	m.claims["k6"] = council.Claim{Key: "k6", State: council.ClaimTaken, Revision: 1}
	m.mu.Unlock()
	go func() {
		r, ran, err := council.Claimed(t.Context(), m, "k6", time.Minute, nil, work)
		got <- result{r, ran, err}
	}()
	m.mu.Lock()
	delete(m.claims, "k6") // the lease's end
	m.mu.Unlock()
	if r := <-got; r.err != nil || !r.ran || calls != 2 {
		t.Fatalf("holder gone: ran=%v %v, %d calls; want the work done by the duplicate", r.ran, r.err, calls)
	}
	// A caller that gives up while waiting gets a transient error.
	m.mu.Lock()
	m.claims["k7"] = council.Claim{Key: "k7", State: council.ClaimTaken, Revision: 1}
	m.mu.Unlock()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := council.Claimed(ctx, m, "k7", time.Minute, nil, work); !council.Retryable(err) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled while waiting: %v, want a transient error", err)
	}
	// Failed work is released.
	boom := errors.New("boom")
	if _, _, err := council.Claimed(t.Context(), m, "k3", time.Minute, nil, func(context.Context) ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("failed work: %v", err)
	}
	if _, ok := m.claims["k3"]; ok {
		t.Error("the claim of failed work was kept")
	}
	// Without claims, or with the store away, the work runs.
	if _, ran, _ := council.Claimed(t.Context(), nil, "k4", time.Minute, nil, work); !ran {
		t.Error("no claims: work did not run")
	}
	m.fail = council.Unavailablef("nats away")
	var reported []error
	if _, ran, _ := council.Claimed(t.Context(), m, "k5", time.Minute, func(err error) { reported = append(reported, err) }, work); !ran || len(reported) != 1 {
		t.Errorf("store away: ran=%v, %d errors reported; want the work run and the error reported", ran, len(reported))
	}
}

func TestClaimKeep(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		deadline time.Time
		want     time.Duration
	}{
		{time.Time{}, council.ClaimKeepNoDeadline},
		{now.Add(10 * time.Minute), 10 * time.Minute},
		{now.Add(time.Second), council.ClaimKeepMin},
	} {
		if got := council.ClaimKeep(tt.deadline, now); got != tt.want {
			t.Errorf("ClaimKeep(%v) = %v, want %v", tt.deadline, got, tt.want)
		}
	}
}

func TestPastDeadlineAndCallBy(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if council.PastDeadline(time.Time{}, now) != nil || council.PastDeadline(now.Add(time.Second), now) != nil {
		t.Error("PastDeadline of no deadline or one ahead: an error")
	}
	err := council.PastDeadline(now, now)
	if err == nil || council.Retryable(err) || !strings.Contains(err.Error(), "without calling the LLM") {
		t.Errorf("PastDeadline at the deadline = %v, want a permanent error", err)
	}
	// CallBy bounds the call and makes its cut permanent.
	err = council.CallBy(t.Context(), time.Now().Add(20*time.Millisecond), func(ctx context.Context) error {
		<-ctx.Done()
		return council.Unavailablef("%v", ctx.Err())
	})
	if err == nil || council.Retryable(err) || !strings.Contains(err.Error(), "passed during the call") {
		t.Errorf("CallBy cut by the deadline = %v, want a permanent error", err)
	}
	// Its own failure, or a cancelled caller, stays as it is.
	err = council.CallBy(t.Context(), time.Now().Add(time.Minute), func(context.Context) error { return council.Unavailablef("502") })
	if !council.Retryable(err) {
		t.Errorf("CallBy of a failing call = %v, want it retryable", err)
	}
	if err := council.CallBy(t.Context(), time.Time{}, func(ctx context.Context) error {
		if _, ok := ctx.Deadline(); ok {
			return errors.New("a deadline")
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}

func TestCheckModels(t *testing.T) {
	task := council.Task{Model: "a", Agents: []council.Agent{
		{ID: "x", Model: "b", FallbackModels: []string{"a", "z"}},
		{ID: "y"},
	}}
	err := task.CheckModels([]string{"a", "b"})
	if !errors.Is(err, council.ErrInvalid) || !strings.Contains(err.Error(), `agents[0].fallback_models[1] "z" is not allowed (allowed: a, b)`) {
		t.Errorf("CheckModels = %v, want the refusal of z", err)
	}
	if err := task.CheckModels([]string{"a", "b", "z"}); err != nil {
		t.Errorf("CheckModels of allowed models = %v", err)
	}
}
