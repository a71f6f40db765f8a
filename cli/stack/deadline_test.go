package stack

import (
	"context"
	"strings"
	"testing"
	"time"

	"council.dev/events"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// stuckCompleter is an LLM that does not answer until released (or the
// call is given up).
type stuckCompleter struct{ release chan struct{} }

func (c stuckCompleter) Complete(ctx context.Context, _ council.CompletionRequest) (council.Completion, error) {
	select {
	case <-ctx.Done():
		return council.Completion{}, ctx.Err()
	case <-c.release:
		return council.Completion{}, council.Unavailablef("released")
	}
}

// TestDeadlineFiresOnTimeWithoutASweep: with no sweep at all, a
// deliberation whose LLM never answers fails as a timeout within 5 s of its
// deadline: execute sets a durable timer (a JetStream message schedule) for
// each deadline when it accepts the request.
func TestDeadlineFiresOnTimeWithoutASweep(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	llm := stuckCompleter{release: make(chan struct{})}
	s, err := Start(ctx, Config{Completer: llm, StoreDir: t.TempDir(), SweepEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	defer close(llm.release) // before Close: the stuck calls end, the stack drains at once

	task := counciltest.Task()
	task.Constraints.Timeout = 2 * time.Second
	req := events.NewRequest("council.dev/test-deadline", "deadline-1", task, time.Now())
	id := council.DeliberationID(req.Source, req.ID)
	start := time.Now()
	if err := s.Send(ctx, req); err != nil {
		t.Fatal(err)
	}
	out, err := s.Await(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if out.Failed == nil || !strings.Contains(out.Failed.Reason, "timeout") {
		t.Fatalf("outcome %+v, want deliberation.failed by timeout", out.Event)
	}
	if took > task.Constraints.Timeout+5*time.Second {
		t.Errorf("failed %s after the request, more than 5 s past its %s deadline", took, task.Constraints.Timeout)
	}
	t.Logf("deadline %s, failed after %s", task.Constraints.Timeout, took)
}
