package counciltest_test

import (
	"testing"
	"time"

	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

func TestFinishCompletesADeliberation(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	d, err := council.New("dlb-finish", counciltest.Task(), now)
	if err != nil {
		t.Fatal(err)
	}
	if err := counciltest.Finish(d, now); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if d.Status != council.StatusCompleted || d.Result == nil {
		t.Fatalf("status %s (%s), result %v; want completed with a result", d.Status, d.Reason, d.Result)
	}
	// 3 agents, 1 round, 1 peer: 3 proposals per stage, 3 ring critiques
	// of stage 0 and 6 of the final review by all pairs.
	if len(d.Proposals) != 6 || len(d.Critiques) != 9 || len(d.Result.Ranking) != 3 {
		t.Errorf("%d proposals, %d critiques, %d ranked; want 6, 9, 3", len(d.Proposals), len(d.Critiques), len(d.Result.Ranking))
	}
}

func TestFinishReportsAStuckDeliberation(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	task := counciltest.Task()
	task.Backend = council.BackendRay // no work: execute only follows the job
	d, err := council.New("dlb-stuck", task, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := counciltest.Finish(d, now); err == nil {
		t.Fatal("Finish of a deliberation with nothing to send = nil, want an error")
	}
}
