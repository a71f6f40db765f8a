package rayjobs_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"council.dev/shared/adapters/rayjobs"
	"council.dev/shared/adapters/rayjobs/raytest"
	"council.dev/shared/council"
)

// Tests below run against the real Ray head of scripts/ray.sh.

const (
	pollEvery = 200 * time.Millisecond
	// jobDeadline bounds how long a short job may take from submission to
	// its end; a fresh head on a busy two-core box needs a few seconds.
	jobDeadline = 90 * time.Second
	// deleteGrace is how long after its end a job can be deleted for good.
	deleteGrace = 5 * time.Second
)

func newClient(t *testing.T, opts ...rayjobs.Option) *rayjobs.Client {
	t.Helper()
	c, err := rayjobs.New(raytest.Address(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// uniqueID returns a submission id no earlier run has used.
func uniqueID(t *testing.T, name string) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "council-test-" + name + "-" + hex.EncodeToString(b)
}

func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 2*jobDeadline)
	t.Cleanup(cancel)
	return c
}

// waitFor polls the job until done says yes, and fails the test with the
// job's state and logs at the deadline.
func waitFor(t *testing.T, c *rayjobs.Client, id string, done func(council.JobInfo) bool) council.JobInfo {
	t.Helper()
	deadline := time.Now().Add(jobDeadline)
	for {
		info, err := c.Get(ctx(t), id)
		if err != nil {
			t.Fatalf("Get(%s): %v", id, err)
		}
		if done(info) {
			return info
		}
		if time.Now().After(deadline) {
			logs, _ := c.Logs(ctx(t), id)
			t.Fatalf("job %s still %s after %s: %s\nlogs:\n%s", id, info.State, jobDeadline, info.Message, logs)
		}
		time.Sleep(pollEvery)
	}
}

func ended(info council.JobInfo) bool { return info.State.Terminal() }

func TestSubmittedJobRunsToSuccessAndLogs(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	id := uniqueID(t, "ok")
	spec := council.JobSpec{
		SubmissionID: id,
		Entrypoint:   `python -c "print('council-ok')"`,
		Metadata:     map[string]string{"deliberation": "d-1", "attempt": "1"},
	}
	before := time.Now().Add(-time.Second)

	got, err := c.Submit(ctx(t), spec)
	if err != nil {
		t.Fatal(err)
	}
	want := council.JobInfo{SubmissionID: id, Entrypoint: spec.Entrypoint, Metadata: spec.Metadata}
	ignore := cmpopts.IgnoreFields(council.JobInfo{}, "JobID", "State", "Message", "StartTime", "EndTime")
	if diff := cmp.Diff(want, got, ignore); diff != "" {
		t.Errorf("Submit (-want +got):\n%s", diff)
	}

	final := waitFor(t, c, id, ended)
	if final.State != council.JobSucceeded {
		t.Fatalf("job ended %s: %s", final.State, final.Message)
	}
	if diff := cmp.Diff(want, final, ignore); diff != "" {
		t.Errorf("Get (-want +got):\n%s", diff)
	}
	if final.StartTime.Before(before) || final.EndTime.Before(final.StartTime) {
		t.Errorf("times: start %v, end %v; want %v <= start <= end", final.StartTime, final.EndTime, before)
	}
	logs, err := c.Logs(ctx(t), id)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs, "council-ok") {
		t.Errorf("logs lack council-ok:\n%s", logs)
	}
}

func TestJobSeesEnvAndWorkingDir(t *testing.T) {
	t.Parallel()
	c := newClient(t, rayjobs.WithRuntimeEnv(map[string]any{
		"env_vars": map[string]string{"COUNCIL_BASE": "from-client", "COUNCIL_WHO": "client"},
	}))
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "marker.txt"), []byte("marker-from-working-dir\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	id := uniqueID(t, "env")
	_, err := c.Submit(ctx(t), council.JobSpec{
		SubmissionID: id,
		Entrypoint: `python -c "import os; print('base=' + os.environ['COUNCIL_BASE']); ` +
			`print('who=' + os.environ['COUNCIL_WHO']); print('task=' + os.environ['COUNCIL_TASK']); ` +
			`print(open('marker.txt').read())"`,
		Env:        map[string]string{"COUNCIL_WHO": "job", "COUNCIL_TASK": "t-42"},
		WorkingDir: dir,
	})
	if err != nil {
		t.Fatal(err)
	}
	final := waitFor(t, c, id, ended)
	logs, err := c.Logs(ctx(t), id)
	if err != nil {
		t.Fatal(err)
	}
	if final.State != council.JobSucceeded {
		t.Fatalf("job ended %s: %s\nlogs:\n%s", final.State, final.Message, logs)
	}
	for _, line := range []string{"base=from-client", "who=job", "task=t-42", "marker-from-working-dir"} {
		if !strings.Contains(logs, line) {
			t.Errorf("logs lack %q:\n%s", line, logs)
		}
	}
}

func TestStopEndsALongJob(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	id := uniqueID(t, "stop")
	if _, err := c.Submit(ctx(t), council.JobSpec{
		SubmissionID: id,
		Entrypoint:   `python -c "import time; time.sleep(600)"`,
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background(), id) })
	waitFor(t, c, id, func(i council.JobInfo) bool { return i.State == council.JobRunning || ended(i) })

	if err := c.Delete(ctx(t), id); !errors.Is(err, council.ErrConflict) {
		t.Errorf("Delete of a running job: err = %v, want ErrConflict", err)
	}
	if err := c.Stop(ctx(t), id); err != nil {
		t.Fatal(err)
	}
	final := waitFor(t, c, id, ended)
	if final.State != council.JobStopped {
		t.Fatalf("job ended %s, want STOPPED: %s", final.State, final.Message)
	}
	if err := c.Stop(ctx(t), id); err != nil {
		t.Errorf("Stop of a stopped job: %v, want nil", err)
	}

	// Ray re-creates the record of a job deleted right after its end (see
	// Client.Delete), so wait, delete, and see that it stays deleted.
	time.Sleep(deleteGrace)
	if err := c.Delete(ctx(t), id); err != nil {
		t.Fatalf("Delete of a stopped job: %v", err)
	}
	time.Sleep(2 * time.Second)
	if info, err := c.Get(ctx(t), id); !errors.Is(err, council.ErrNotFound) {
		t.Errorf("Get after Delete = %s %q, %v; want ErrNotFound", info.State, info.Entrypoint, err)
	}
}

func TestSubmittingTwiceReturnsTheFirstJob(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	id := uniqueID(t, "twice")
	first := council.JobSpec{SubmissionID: id, Entrypoint: `python -c "print('first')"`}
	a, err := c.Submit(ctx(t), first)
	if err != nil {
		t.Fatal(err)
	}
	second := first
	second.Entrypoint = `python -c "print('second')"`
	b, err := c.Submit(ctx(t), second)
	if err != nil {
		t.Fatalf("second Submit: %v, want the first job", err)
	}
	if b.SubmissionID != id || b.Entrypoint != first.Entrypoint {
		t.Errorf("second Submit = %s %q, want %s %q", b.SubmissionID, b.Entrypoint, a.SubmissionID, first.Entrypoint)
	}
	final := waitFor(t, c, id, ended)
	logs, err := c.Logs(ctx(t), id)
	if err != nil {
		t.Fatal(err)
	}
	if final.State != council.JobSucceeded || strings.Contains(logs, "second") {
		t.Errorf("job ended %s with logs:\n%s\nwant SUCCEEDED, only the first entrypoint run", final.State, logs)
	}
}

func TestUnknownJobIsNotFound(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	id := uniqueID(t, "missing")
	tests := []struct {
		name string
		call func() error
	}{
		{"Get", func() error { _, err := c.Get(ctx(t), id); return err }},
		{"Logs", func() error { _, err := c.Logs(ctx(t), id); return err }},
		{"Stop", func() error { return c.Stop(ctx(t), id) }},
		{"Delete", func() error { return c.Delete(ctx(t), id) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, council.ErrNotFound) {
				t.Fatalf("err = %v, want ErrNotFound", err)
			}
			if council.Retryable(err) {
				t.Errorf("not found is retryable: %v", err)
			}
		})
	}
}

func TestListHasSubmittedJob(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	id := uniqueID(t, "list")
	if _, err := c.Submit(ctx(t), council.JobSpec{SubmissionID: id, Entrypoint: "true"}); err != nil {
		t.Fatal(err)
	}
	jobs, err := c.List(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if j.SubmissionID == id {
			if j.Entrypoint != "true" {
				t.Errorf("listed entrypoint %q, want %q", j.Entrypoint, "true")
			}
			return
		}
	}
	t.Errorf("List has %d jobs, none %s", len(jobs), id)
}

func TestVersionAnswers(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	v, err := c.Version(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if v.API == "" || v.Ray == "" || v.Session == "" {
		t.Errorf("Version = %+v, want API, Ray and Session", v)
	}
	t.Logf("Ray %s, Jobs API %s", v.Ray, v.API)
}

func TestRayDownIsUnavailable(t *testing.T) {
	t.Parallel()
	// A port that was just free: nothing listens on it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := rayjobs.New(addr)
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]func() error{
		"Submit": func() error {
			_, err := c.Submit(ctx(t), council.JobSpec{SubmissionID: "s-1", Entrypoint: "true"})
			return err
		},
		"Get":     func() error { _, err := c.Get(ctx(t), "s-1"); return err },
		"Stop":    func() error { return c.Stop(ctx(t), "s-1") },
		"Version": func() error { _, err := c.Version(ctx(t)); return err },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			err := call()
			if !errors.Is(err, council.ErrUnavailable) || !council.Retryable(err) {
				t.Errorf("err = %v, want retryable ErrUnavailable", err)
			}
		})
	}
}
