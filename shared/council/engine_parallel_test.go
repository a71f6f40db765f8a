package council_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// barrier lets calls through n at a time: each call waits until n calls
// wait together, or fails when timeout passes first. A backend that makes
// a stage's calls one after another never gathers n of them.
type barrier struct {
	n       int
	timeout time.Duration

	mu       sync.Mutex
	waiting  int
	release  chan struct{}
	gathered int // groups of n released
}

func newBarrier(n int, timeout time.Duration) *barrier {
	return &barrier{n: n, timeout: timeout, release: make(chan struct{})}
}

// wait blocks until n calls wait, and returns an error after the timeout.
func (b *barrier) wait(ctx context.Context) error {
	b.mu.Lock()
	b.waiting++
	ch := b.release
	if b.waiting == b.n {
		close(ch)
		b.waiting, b.gathered = 0, b.gathered+1
		b.release = make(chan struct{})
	}
	b.mu.Unlock()
	t := time.NewTimer(b.timeout)
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("only %d of %d calls in flight after %s", b.count(), b.n, b.timeout)
	}
}

func (b *barrier) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.waiting
}

func (b *barrier) groups() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.gathered
}

// TestEngineRunsAStageConcurrently: the engine (the Ray job's runner) makes
// the calls of one stage at the same time. Every call of the scripted LLM
// waits until all the agents' calls of the stage are in flight; an engine
// that ran one agent's call after another's would leave the first call
// alone at the barrier until its timeout, and the failures would show.
func TestEngineRunsAStageConcurrently(t *testing.T) {
	task := counciltest.Task() // 3 agents, 1 round: 4 stages of 3 calls or more
	task.Constraints.MaxRetries = 0
	n := len(task.Agents)
	b := newBarrier(n, 10*time.Second)
	var (
		mu       sync.Mutex
		failures []error
	)
	llm := &counciltest.Completer{CompleteFunc: func(ctx context.Context, req council.CompletionRequest) (council.Completion, error) {
		if err := b.wait(ctx); err != nil {
			mu.Lock()
			failures = append(failures, err)
			mu.Unlock()
			return council.Completion{}, council.Unavailablef("barrier: %v", err)
		}
		return counciltest.Answer(req), nil
	}}
	d := engineDeliberation(t, task)
	if err := (&council.Engine{LLM: llm}).Run(t.Context(), d); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(failures) > 0 {
		t.Fatalf("calls were not concurrent: %v", failures)
	}
	if d.Status != council.StatusCompleted || len(d.Result.Ranking) != n {
		t.Fatalf("status %s (reason %q), %d ranked; want completed with %d", d.Status, d.Reason, len(d.Result.Ranking), n)
	}
	// Proposals, critiques, revisions, final review: every call passed in a
	// group of n in flight together, and every stage had one at least.
	if calls, groups := len(llm.Requests()), b.groups(); groups*n != calls || groups < 4 {
		t.Errorf("%d calls passed in %d groups of %d concurrent calls; want all of them, 4 groups at least (one per stage)", calls, groups, n)
	}
}

// TestBarrierFailsSequentialCalls checks the test's own instrument: calls
// made one after another never pass the barrier.
func TestBarrierFailsSequentialCalls(t *testing.T) {
	b := newBarrier(2, 50*time.Millisecond)
	if err := b.wait(t.Context()); err == nil {
		t.Fatal("a lone call passed a barrier of 2")
	}
	if b.groups() != 0 {
		t.Errorf("groups = %d, want 0", b.groups())
	}
}
