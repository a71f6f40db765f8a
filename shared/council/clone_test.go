package council_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

func TestCloneIsDeepAndEqual(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	task := counciltest.Task()
	task.Constraints.Metadata = map[string]string{"k": "v"}
	d, err := council.New("dlb-clone", task, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := counciltest.Finish(d, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	d.Job = &council.JobRef{SubmissionID: "j-1", State: council.JobRunning}
	c := d.Clone()
	if diff := cmp.Diff(d, c); diff != "" {
		t.Fatalf("clone differs (-orig +clone):\n%s", diff)
	}
	// Change everything reachable in the clone; the original stays.
	want := d.Clone()
	for _, w := range c.Work {
		w.State = council.WorkFailed
	}
	for k, p := range c.Proposals {
		p.Content = "changed"
		c.Proposals[k] = p
	}
	for _, cr := range c.Critiques {
		cr.Scores["correctness"] = -1
		cr.Strengths[0] = "changed"
	}
	c.Result.Ranking[0].Scores["correctness"] = -1
	c.Result.Ranking[0].Critiques[0].Scores["correctness"] = -1
	c.Task.Agents[0].ID = "changed"
	c.Task.Constraints.Metadata["k"] = "changed"
	c.Job.State = council.JobFailed
	c.Outbox = append(c.Outbox[:0], "changed")
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("changing the clone changed the original (-want +got):\n%s", diff)
	}
}
