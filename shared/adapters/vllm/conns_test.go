package vllm_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"council.dev/shared/adapters/vllm"
)

// barrier holds each request until n are in flight, so that every round of
// the test really has n calls at once.
type barrier struct {
	mu      sync.Mutex
	n, in   int
	release chan struct{}
}

func newBarrier(n int) *barrier { return &barrier{n: n, release: make(chan struct{})} }

func (b *barrier) wait(ctx context.Context) bool {
	b.mu.Lock()
	release := b.release
	b.in++
	if b.in == b.n {
		close(b.release)
		b.in, b.release = 0, make(chan struct{})
	}
	b.mu.Unlock()
	select {
	case <-release:
		return true
	case <-ctx.Done():
		return false
	}
}

// TestConnectionsAreReusedUnderLoad runs rounds of 32 calls at once against
// a real local HTTP server and counts the TCP connections the server
// accepts: the first round opens 32, the later rounds reuse them. (With
// Go's default of 2 idle connections per host, each later round opened 30
// new ones.)
func TestConnectionsAreReusedUnderLoad(t *testing.T) {
	const concurrent, rounds = 32, 4
	var opened atomic.Int64
	var unmatched atomic.Int64
	b := newBarrier(concurrent)
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		if !b.wait(ctx) {
			unmatched.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(okBody + "\n"))
	}))
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	ts.Start()
	t.Cleanup(ts.Close)

	c, err := vllm.New(ts.URL+"/v1", "m", vllm.WithRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	perRound := make([]int64, rounds)
	for round := range rounds {
		before := opened.Load()
		var wg sync.WaitGroup
		errs := make(chan error, concurrent)
		for range concurrent {
			wg.Go(func() {
				if _, err := c.Complete(t.Context(), userRequest()); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: %v", round, err)
		}
		perRound[round] = opened.Load() - before
	}
	if n := unmatched.Load(); n > 0 {
		t.Fatalf("%d requests never saw %d calls in flight: the rounds were not concurrent", n, concurrent)
	}
	t.Logf("new TCP connections per round of %d concurrent calls: %v", concurrent, perRound)
	if perRound[0] > concurrent {
		t.Errorf("first round opened %d connections for %d calls", perRound[0], concurrent)
	}
	for r := 1; r < rounds; r++ {
		// A connection the server has not yet seen returned to idle can
		// race with the next round: allow a few, far from 30.
		if perRound[r] > 2 {
			t.Errorf("round %d opened %d new connections, want the idle ones reused (at most 2 new)", r, perRound[r])
		}
	}
}

// TestMaxConnsOption checks WithMaxConns's validation.
func TestMaxConnsOption(t *testing.T) {
	if _, err := vllm.New("http://h/v1", "m", vllm.WithMaxConns(0)); err == nil {
		t.Error("WithMaxConns(0) accepted")
	}
	if _, err := vllm.New("http://h/v1", "m", vllm.WithMaxConns(8)); err != nil {
		t.Errorf("WithMaxConns(8): %v", err)
	}
}
