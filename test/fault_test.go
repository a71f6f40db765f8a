package test

import (
	"context"
	"testing"
	"time"

	"council.dev/cli/stack"
	"council.dev/shared/adapters/vllm/vllmtest"
)

// TestDeliberationSurvivesAWholeStackRestart stops everything — the three
// functions and the NATS server — in the middle of a deliberation, starts
// it again on the same JetStream storage, and expects the deliberation to
// complete as if nothing happened: the state is in the KV bucket, the
// unacknowledged events are redelivered to the durable consumers, and the
// sweep re-sends what an outbox still holds.
func TestDeliberationSurvivesAWholeStackRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := stack.Config{
		LLMURL: vllmtest.URL(t), LLMModel: vllmtest.Model(), StoreDir: dir,
		LLMTimeout: 2 * time.Minute, SweepEvery: time.Second,
	}
	ctx := context.Background()
	first, err := stack.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	id := send(t, first, request(t, 32))

	// Wait until the deliberation is under way: some proposals in, not done.
	eventually(t, 3*time.Minute, "a first proposal recorded", func() bool {
		d, _, err := first.Store.Get(ctx, id)
		return err == nil && len(d.Proposals) > 0
	})
	d, _, err := first.Store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if d.Status.Terminal() {
		t.Fatalf("the deliberation ended before the restart (%s): the test proves nothing", d.Status)
	}
	t.Logf("stopping the whole stack at stage %d %s with %d proposal(s) and %d critique(s) recorded",
		d.Stage, d.Phase, len(d.Proposals), len(d.Critiques))
	first.Close()

	second, err := stack.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("restart stack on the same storage: %v", err)
	}
	t.Cleanup(second.Close)
	c := await(t, second, id)
	checkCompleted(t, c, "task-42")

	// Exactly one outcome, however many times events were redelivered.
	time.Sleep(2 * time.Second)
	if n := countEvents(t, second, id)["dev.council.deliberation.completed.v1"]; n != 1 {
		t.Errorf("%d deliberation.completed events after the restart, want exactly 1", n)
	}
}
