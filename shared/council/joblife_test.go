package council_test

import (
	"testing"
	"time"

	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

func TestJobLife(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	task := counciltest.Task()
	task.Backend = council.BackendRay
	d, err := council.New("dlb-job", task, t0)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		do   func() bool
		want bool
	}{
		{"submitted before begun", func() bool { return d.JobSubmitted("dlb-job-1", council.JobInfo{State: council.JobPending}) }, false},
		{"begin attempt 1", func() bool { return d.BeginJob("dlb-job-1", 1, t0) }, true},
		{"begin attempt 1 again", func() bool { return d.BeginJob("dlb-job-1", 1, t0) }, false},
		{"logs of a running job", func() bool { return d.RecordJobLogs("dlb-job-1", "x") }, false},
		{"submitted, another job", func() bool { return d.JobSubmitted("dlb-job-9", council.JobInfo{State: council.JobPending}) }, false},
		{"submitted, no state", func() bool { return d.JobSubmitted("dlb-job-1", council.JobInfo{}) }, true},
		{"submitted twice", func() bool { return d.JobSubmitted("dlb-job-1", council.JobInfo{State: council.JobRunning}) }, false},
		{"observed running", func() bool { return d.ObserveJob("dlb-job-1", council.JobRunning, "", time.Time{}) }, true},
		{"observed running again", func() bool { return d.ObserveJob("dlb-job-1", council.JobRunning, "", time.Time{}) }, false},
		{"observed, another job", func() bool { return d.ObserveJob("dlb-job-9", council.JobFailed, "", t0) }, false},
		{"observed succeeded", func() bool { return d.ObserveJob("dlb-job-1", council.JobSucceeded, "ok", t0.Add(time.Minute)) }, true},
		{"an ended job stays ended", func() bool { return d.ObserveJob("dlb-job-1", council.JobRunning, "", time.Time{}) }, false},
		{"deletable while the deliberation runs", func() bool { return d.JobDeletable("dlb-job-1", t0.Add(time.Hour)) }, false},
		{"logs recorded", func() bool { return d.RecordJobLogs("dlb-job-1", "done") }, true},
		{"logs recorded twice", func() bool { return d.RecordJobLogs("dlb-job-1", "done") }, false},
		{"completed", func() bool { return d.Fail("test", t0.Add(time.Minute)) }, true},
		{"begin after the end", func() bool { return d.BeginJob("dlb-job-2", 2, t0) }, false},
		{"deletable too early", func() bool { return d.JobDeletable("dlb-job-1", t0.Add(time.Minute+time.Second)) }, false},
		{"deletable after JobDeleteAfter", func() bool { return d.JobDeletable("dlb-job-1", t0.Add(time.Minute+council.JobDeleteAfter)) }, true},
		{"owes while not deleted", func() bool { d.Acknowledge(council.OutboxFailed); return d.Owes() }, true},
		{"deleted, another job", func() bool { return d.JobDeleted("dlb-job-9") }, false},
		{"deleted", func() bool { return d.JobDeleted("dlb-job-1") }, true},
		{"deleted twice", func() bool { return d.JobDeleted("dlb-job-1") }, false},
		{"owes nothing once deleted", func() bool { return d.Owes() }, false},
	}
	for _, s := range steps {
		if got := s.do(); got != s.want {
			t.Fatalf("%s: %v, want %v (job %+v)", s.name, got, s.want, d.Job)
		}
	}
	if d.Job.State != council.JobSucceeded || d.Job.LogTail != "done" || d.Job.Message != "ok" {
		t.Errorf("job at the end: %+v", d.Job)
	}
}

func TestPoolRunOwesNothingOnceEnded(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	task := counciltest.Task()
	task.Backend = council.BackendRay
	d, err := council.New("dlb-pool", task, t0)
	if err != nil {
		t.Fatal(err)
	}
	if !d.BeginPoolRun("pool-dlb-pool-1", 1, t0) || !d.Job.Pool || d.Job.State != council.JobSubmitting {
		t.Fatalf("pool run begun: %+v", d.Job)
	}
	if d.BeginPoolRun("pool-dlb-pool-1", 1, t0) {
		t.Error("the same pool run begun twice")
	}
	d.JobSubmitted("pool-dlb-pool-1", council.JobInfo{State: council.JobPending})
	d.ObserveJob("pool-dlb-pool-1", council.JobSucceeded, "done", t0)
	d.Fail("test", t0)
	d.Acknowledge(council.OutboxFailed)
	if d.Owes() {
		t.Errorf("an ended pool run owes %+v; want nothing (no job to delete)", d.Job)
	}
}
