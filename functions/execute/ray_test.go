package execute_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"

	"council.dev/events"
	"council.dev/functions/execute"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// rayEnv is the job environment a composition root would configure.
var rayEnv = map[string]string{
	"COUNCIL_NATS_URL":  "nats://127.0.0.1:4222",
	"COUNCIL_LLM_URL":   "http://127.0.0.1:8088/v1",
	"COUNCIL_LLM_MODEL": "council-tiny",
}

type rayRig struct {
	store  *counciltest.Store
	em     *counciltest.Emitter
	runner *counciltest.JobRunner
	clock  *clock
	f      *execute.Function
	ctx    context.Context
}

func newRayRig(t *testing.T, tmpl execute.JobTemplate) *rayRig {
	t.Helper()
	r := &rayRig{
		store: counciltest.NewStore(), em: &counciltest.Emitter{}, clock: &clock{t0}, ctx: context.Background(),
	}
	r.runner = &counciltest.JobRunner{Now: r.clock.Now}
	if tmpl.Env == nil {
		tmpl.Env = rayEnv
	}
	f, err := execute.New(r.store, r.em, execute.WithClock(r.clock.Now), execute.WithJobRunner(r.runner, tmpl))
	if err != nil {
		t.Fatal(err)
	}
	r.f = f
	return r
}

// rayRequest is the ray_backend fixture (timeout 3600 s, max_retries 1),
// changed by edit.
func rayRequest(t *testing.T, edit func(data map[string]any)) event.Event {
	t.Helper()
	e := fixture(t, "deliberation.requested.v1/valid/ray_backend.json")
	if edit == nil {
		return e
	}
	var data map[string]any
	if err := json.Unmarshal(e.Data(), &data); err != nil {
		t.Fatal(err)
	}
	edit(data)
	if err := e.SetData(event.ApplicationJSON, data); err != nil {
		t.Fatal(err)
	}
	return e
}

func constraints(data map[string]any) map[string]any { return data["constraints"].(map[string]any) }

func (r *rayRig) handle(t *testing.T, e event.Event) *event.Event {
	t.Helper()
	reply, err := r.f.Handle(r.ctx, e)
	if err != nil {
		t.Fatalf("Handle %s: %v", e.Type(), err)
	}
	return reply
}

func (r *rayRig) tick(t *testing.T, after time.Duration) {
	t.Helper()
	r.clock.now = r.clock.now.Add(after)
	r.handle(t, fixture(t, "sweep.tick.v1/valid/tick.json"))
}

func (r *rayRig) get(t *testing.T, id string) *council.Deliberation {
	t.Helper()
	d, _, err := r.store.Get(r.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// lastFailed decodes the last emitted event as deliberation.failed.
func (r *rayRig) lastFailed(t *testing.T) events.Failed {
	t.Helper()
	sent := r.em.Sent()
	if len(sent) == 0 {
		t.Fatal("nothing emitted, want deliberation.failed")
	}
	last := sent[len(sent)-1]
	f, err := events.DecodeFailed(events.ToEvent(last))
	if err != nil {
		t.Fatalf("last event %s is not deliberation.failed: %v", last.Type, err)
	}
	if last.ID != f.DeliberationID+".failed" {
		t.Errorf("failed event id %q, want %q (the id execute uses)", last.ID, f.DeliberationID+".failed")
	}
	return f
}

func TestRayRequestSubmitsOneJob(t *testing.T) {
	r := newRayRig(t, execute.JobTemplate{WorkingDir: "gcs://_ray_pkg_agent.zip"})
	req := rayRequest(t, nil)
	id := council.DeliberationID(req.Source(), req.ID())
	sid := id + "-1"

	acc, err := events.DecodeAccepted(*r.handle(t, req))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(events.Accepted{DeliberationID: id, TaskID: "task-43", Status: "running", Backend: "ray"}, acc); diff != "" {
		t.Errorf("accepted (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{sid}, r.runner.Jobs()); diff != "" {
		t.Fatalf("jobs (-want +got):\n%s", diff)
	}
	spec, _ := r.runner.Spec(sid)
	if spec.Entrypoint != execute.DefaultEntrypoint || spec.WorkingDir != "gcs://_ray_pkg_agent.zip" {
		t.Errorf("entrypoint %q in %q, want %q in the template's working dir", spec.Entrypoint, spec.WorkingDir, execute.DefaultEntrypoint)
	}
	for k, v := range rayEnv {
		if spec.Env[k] != v {
			t.Errorf("job env %s = %q, want %q", k, spec.Env[k], v)
		}
	}
	if spec.Metadata["deliberation_id"] != id || spec.Metadata["task_id"] != "task-43" {
		t.Errorf("job metadata %v, want the deliberation and task ids", spec.Metadata)
	}
	// The job is told the deliberation id only: council-agent reads the
	// task execute stored.
	gotID, task, err := execute.JobRequest(func(k string) string { return spec.Env[k] }, t.TempDir())
	if err != nil {
		t.Fatalf("the job cannot read its request: %v", err)
	}
	d := r.get(t, id)
	if gotID != id || task != nil {
		t.Errorf("job request: deliberation id %q, task %v; want %q and no task", gotID, task, id)
	}
	if spec.Env[execute.EnvRequest] != "" || spec.Env[execute.EnvRequestFile] != "" {
		t.Errorf("job env carries the request (%s, %s); want the id only", execute.EnvRequest, execute.EnvRequestFile)
	}
	want := &council.JobRef{SubmissionID: sid, Attempt: 1, State: council.JobPending, SubmittedAt: t0}
	if diff := cmp.Diff(want, d.Job); diff != "" {
		t.Errorf("stored job (-want +got):\n%s", diff)
	}
	if len(d.Work) != 0 || len(r.em.Sent()) != 0 {
		t.Errorf("ray deliberation has %d work items and sent %v; the job does the work", len(d.Work), r.em.Types())
	}

	// The same request again (the broker retries) submits nothing more.
	r.handle(t, req)
	r.tick(t, time.Second)
	if n := len(r.runner.Submits()); n != 1 {
		t.Errorf("%d submits after a duplicate request and a sweep, want 1", n)
	}

	// The sweep records what Ray says.
	r.runner.SetState(sid, council.JobRunning, "")
	r.tick(t, time.Second)
	if got := r.get(t, id).Job.State; got != council.JobRunning {
		t.Errorf("job state after a sweep = %s, want RUNNING", got)
	}
}

func TestRayRetriedRequestFindsTheJob(t *testing.T) {
	r := newRayRig(t, execute.JobTemplate{})
	down := true
	r.runner.SubmitFunc = func(ctx context.Context, spec council.JobSpec) (council.JobInfo, error) {
		if down {
			return council.JobInfo{}, council.Unavailablef("ray head down")
		}
		return council.JobInfo{SubmissionID: spec.SubmissionID, State: council.JobPending}, nil
	}
	req := rayRequest(t, nil)
	if _, err := r.f.Handle(r.ctx, req); !errors.Is(err, council.ErrUnavailable) {
		t.Fatalf("Handle with Ray down: %v, want ErrUnavailable (the broker retries)", err)
	}
	down = false
	r.handle(t, req)
	id := council.DeliberationID(req.Source(), req.ID())
	if d := r.get(t, id); d.Job == nil || d.Job.SubmissionID != id+"-1" {
		t.Fatalf("job after the retried request: %+v", d.Job)
	}
	if diff := cmp.Diff([]string{id + "-1", id + "-1"}, r.runner.Submits()); diff != "" {
		t.Errorf("submits (-want +got):\n%s", diff)
	}
}

func TestRayRefusedJobFailsTheDeliberation(t *testing.T) {
	r := newRayRig(t, execute.JobTemplate{})
	r.runner.SubmitFunc = func(context.Context, council.JobSpec) (council.JobInfo, error) {
		return council.JobInfo{}, council.Invalidf("runtime_env: bad working_dir")
	}
	acc, err := events.DecodeAccepted(*r.handle(t, rayRequest(t, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if acc.Status != "failed" {
		t.Errorf("accepted status %q, want failed", acc.Status)
	}
	if f := r.lastFailed(t); !strings.Contains(f.Reason, "bad working_dir") {
		t.Errorf("reason %q does not say why Ray refused the job", f.Reason)
	}
}

func TestRayFailedJobIsSubmittedAgain(t *testing.T) {
	r := newRayRig(t, execute.JobTemplate{})
	req := rayRequest(t, nil) // max_retries 1
	id := council.DeliberationID(req.Source(), req.ID())
	r.handle(t, req)

	r.runner.SetState(id+"-1", council.JobFailed, "Job entrypoint command failed with exit code 1")
	r.tick(t, time.Second)
	d := r.get(t, id)
	if d.Status != council.StatusRunning || d.Job.SubmissionID != id+"-2" || d.Job.Attempt != 2 {
		t.Fatalf("after attempt 1 failed: status %s, job %+v; want running with attempt 2", d.Status, d.Job)
	}
	r.tick(t, time.Second) // a second sweep changes nothing
	if diff := cmp.Diff([]string{id + "-1", id + "-2"}, r.runner.Jobs()); diff != "" {
		t.Errorf("jobs (-want +got):\n%s", diff)
	}

	var logs strings.Builder
	for i := 1; i <= 30; i++ {
		fmt.Fprintf(&logs, "log line %02d\n", i)
	}
	r.runner.SetLogs(id+"-2", logs.String())
	r.runner.SetState(id+"-2", council.JobFailed, "Job entrypoint command failed with exit code 1")
	r.tick(t, time.Second)
	f := r.lastFailed(t)
	for _, want := range []string{id + "-2", "FAILED", "attempt 2", "exit code 1", "log line 11", "log line 30"} {
		if !strings.Contains(f.Reason, want) {
			t.Errorf("reason %q does not contain %q", f.Reason, want)
		}
	}
	if strings.Contains(f.Reason, "log line 10") {
		t.Errorf("reason quotes more than the last 20 log lines: %q", f.Reason)
	}
	if n := len(r.runner.Jobs()); n != 2 {
		t.Errorf("%d jobs, want 2: max_retries 1 allows one more attempt", n)
	}
}

// TestRayMaxRetriesZeroNeverRetries is bug B5 of the old service: 0 was
// coerced to 3, so "no retries" could not be asked for.
func TestRayMaxRetriesZeroNeverRetries(t *testing.T) {
	r := newRayRig(t, execute.JobTemplate{LogLines: 2})
	req := rayRequest(t, func(data map[string]any) { constraints(data)["max_retries"] = 0 })
	id := council.DeliberationID(req.Source(), req.ID())
	r.handle(t, req)
	r.runner.SetLogs(id+"-1", "starting\nconnect nats: refused\npanic: no state\n")
	r.runner.SetState(id+"-1", council.JobFailed, "exit code 1")
	r.tick(t, time.Second)

	f := r.lastFailed(t)
	if !strings.Contains(f.Reason, "connect nats: refused\npanic: no state") || strings.Contains(f.Reason, "starting") {
		t.Errorf("reason %q, want the last 2 log lines", f.Reason)
	}
	if diff := cmp.Diff([]string{id + "-1"}, r.runner.Submits()); diff != "" {
		t.Errorf("submits (-want +got):\n%s", diff)
	}
	d := r.get(t, id)
	if d.Status != council.StatusFailed || d.Job.State != council.JobFailed || len(d.Outbox) != 0 {
		t.Errorf("stored: status %s, job %s, outbox %v", d.Status, d.Job.State, d.Outbox)
	}
	// Once failed, sweeps leave it alone.
	r.tick(t, time.Minute)
	if n := len(r.em.Sent()); n != 1 {
		t.Errorf("%d events after another sweep, want the 1 failed event", n)
	}
}

func TestRayTimeoutStopsTheJob(t *testing.T) {
	r := newRayRig(t, execute.JobTemplate{})
	req := rayRequest(t, func(data map[string]any) { constraints(data)["timeout_seconds"] = 60 })
	id := council.DeliberationID(req.Source(), req.ID())
	r.handle(t, req)
	r.runner.SetState(id+"-1", council.JobRunning, "")

	r.tick(t, 30*time.Second)
	if len(r.runner.Stops()) != 0 || r.get(t, id).Status != council.StatusRunning {
		t.Fatal("stopped before the deadline")
	}
	r.tick(t, 31*time.Second)
	if diff := cmp.Diff([]string{id + "-1"}, r.runner.Stops()); diff != "" {
		t.Errorf("stops (-want +got):\n%s", diff)
	}
	if f := r.lastFailed(t); !strings.Contains(f.Reason, "timeout") {
		t.Errorf("reason %q does not mention the timeout", f.Reason)
	}
	// The next sweep records that the job stopped, and retries nothing.
	r.tick(t, time.Second)
	d := r.get(t, id)
	if d.Job.State != council.JobStopped || len(r.runner.Jobs()) != 1 {
		t.Errorf("after the timeout: job %s, jobs %v; want STOPPED and no new attempt", d.Job.State, r.runner.Jobs())
	}
}

func TestRaySucceededWithoutResultFailsAfterGrace(t *testing.T) {
	r := newRayRig(t, execute.JobTemplate{ResultGrace: 30 * time.Second})
	req := rayRequest(t, nil)
	id := council.DeliberationID(req.Source(), req.ID())
	r.handle(t, req)
	r.runner.SetState(id+"-1", council.JobSucceeded, "Job finished successfully.")

	r.tick(t, 10*time.Second)
	d := r.get(t, id)
	if d.Status != council.StatusRunning || d.Job.State != council.JobSucceeded {
		t.Fatalf("10s after success: status %s, job %s; want running (the result may be on its way), SUCCEEDED", d.Status, d.Job.State)
	}
	r.tick(t, 25*time.Second)
	if f := r.lastFailed(t); !strings.Contains(f.Reason, "succeeded without a result") {
		t.Errorf("reason %q", f.Reason)
	}
	if n := len(r.runner.Submits()); n != 1 {
		t.Errorf("%d submits, want 1: a job that succeeded is not run again", n)
	}
}

// TestRayJobRecordsTheResult runs the job's side (execute.Agent) against
// the same store: execute's sweeps then change nothing but the job state,
// and the completed event is sent once, with execute's id.
func TestRayJobRecordsTheResult(t *testing.T) {
	r := newRayRig(t, execute.JobTemplate{})
	req := rayRequest(t, func(data map[string]any) { constraints(data)["rounds"] = 1; constraints(data)["peers"] = 1 })
	id := council.DeliberationID(req.Source(), req.ID())
	r.handle(t, req)
	r.runner.SetState(id+"-1", council.JobRunning, "")

	spec, _ := r.runner.Spec(id + "-1")
	jid, task, err := execute.JobRequest(func(k string) string { return spec.Env[k] }, "")
	if err != nil || task != nil {
		t.Fatalf("job request: task %v, %v; want the id only", task, err)
	}
	agent := &execute.Agent{Store: r.store, Emitter: r.em, LLM: &counciltest.Completer{}, Now: r.clock.Now}
	d, err := agent.RunStored(r.ctx, jid)
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != council.StatusCompleted {
		t.Fatalf("agent: %s", execute.Summary(d))
	}
	r.runner.SetState(id+"-1", council.JobSucceeded, "")
	r.tick(t, time.Minute)
	r.tick(t, time.Minute)

	if diff := cmp.Diff([]string{events.TypeDeliberationCompleted}, r.em.Types()); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	sent := r.em.Sent()[0]
	c, err := events.DecodeCompleted(events.ToEvent(sent))
	if err != nil {
		t.Fatal(err)
	}
	if sent.ID != id+".completed" || c.Backend != "ray" || len(c.Ranking) != 3 || c.Winner == "" {
		t.Errorf("completed event %s: backend %s, %d ranked, winner %q", sent.ID, c.Backend, len(c.Ranking), c.Winner)
	}
	stored := r.get(t, id)
	if stored.Status != council.StatusCompleted || stored.Job.State != council.JobSucceeded || len(stored.Outbox) != 0 {
		t.Errorf("stored: %s, job %s, outbox %v", stored.Status, stored.Job.State, stored.Outbox)
	}
}

// TestRayLargeRequestCarriesTheIDOnly: whatever the request's size, the
// job gets the deliberation id and the template's working directory as is
// (the runner uploads it once for every job).
func TestRayLargeRequestCarriesTheIDOnly(t *testing.T) {
	dir := t.TempDir()
	r := newRayRig(t, execute.JobTemplate{WorkingDir: dir})
	big := map[string]any{}
	for i := range 4 {
		big[fmt.Sprintf("note_%d", i)] = strings.Repeat("x", 30<<10)
	}
	req := rayRequest(t, func(data map[string]any) { constraints(data)["metadata"] = big })
	id := council.DeliberationID(req.Source(), req.ID())
	r.handle(t, req)
	spec, ok := r.runner.Spec(id + "-1")
	if !ok {
		t.Fatal("no job submitted")
	}
	if spec.WorkingDir != dir {
		t.Errorf("job working dir %s, want the template's %s", spec.WorkingDir, dir)
	}
	size := 0
	for k, v := range spec.Env {
		size += len(k) + len(v)
	}
	if size > 1024 || spec.Env[execute.EnvDeliberationID] != id {
		t.Errorf("job env of %d bytes with deliberation id %q; want the id only", size, spec.Env[execute.EnvDeliberationID])
	}
	if got := len(r.get(t, id).Task.Constraints.Metadata); got != 4 {
		t.Errorf("stored task has %d metadata entries, want 4", got)
	}
}

// TestRayJobBeingSubmittedIsNotSubmittedAgain: the job is recorded as being
// submitted before the request to Ray; while the submission is under way
// (Ray does not know the job yet) the sweep waits, and after SubmitGrace it
// submits the same submission id again, never a second attempt.
func TestRayJobBeingSubmittedIsNotSubmittedAgain(t *testing.T) {
	r := newRayRig(t, execute.JobTemplate{})
	req := rayRequest(t, nil)
	id := council.DeliberationID(req.Source(), req.ID())
	var sweeps []error
	r.runner.SubmitFunc = func(ctx context.Context, spec council.JobSpec) (council.JobInfo, error) {
		// What the store holds while the request to Ray is under way, and
		// a sweep that runs meanwhile.
		if d := r.get(t, id); d.Job == nil || d.Job.State != council.JobSubmitting {
			t.Errorf("job stored during the submission: %+v, want SUBMITTING", d.Job)
		}
		if len(sweeps) == 0 {
			_, err := r.f.Handle(r.ctx, fixture(t, "sweep.tick.v1/valid/tick.json"))
			sweeps = append(sweeps, err)
		}
		return council.JobInfo{}, council.Unavailablef("ray head timed out")
	}
	if _, err := r.f.Handle(r.ctx, req); !errors.Is(err, council.ErrUnavailable) {
		t.Fatalf("Handle with the submission timing out: %v, want ErrUnavailable", err)
	}
	if len(sweeps) != 1 || sweeps[0] != nil {
		t.Fatalf("sweep during the submission: %v", sweeps)
	}
	if diff := cmp.Diff([]string{id + "-1"}, r.runner.Submits()); diff != "" {
		t.Fatalf("submits after a sweep during the submission (-want +got):\n%s", diff)
	}
	r.runner.SubmitFunc = nil
	r.tick(t, council.JobDeleteAfter) // within SubmitGrace: wait
	if n := len(r.runner.Submits()); n != 1 {
		t.Fatalf("%d submits within the grace, want 1", n)
	}
	r.tick(t, execute.SubmitGrace)
	if diff := cmp.Diff([]string{id + "-1", id + "-1"}, r.runner.Submits()); diff != "" {
		t.Fatalf("submits after the grace (-want +got):\n%s", diff)
	}
	if d := r.get(t, id); d.Job.Attempt != 1 || d.Job.State != council.JobPending {
		t.Errorf("job after the second submission: %+v, want attempt 1, PENDING", d.Job)
	}
}

// TestRayEndedJobIsDeletedWithItsLogsRecorded: once the deliberation and
// its job have ended, the sweep records the job's end and the end of its
// logs, and deletes it from Ray JobDeleteAfter after it ended; then the
// deliberation owes nothing.
func TestRayEndedJobIsDeletedWithItsLogsRecorded(t *testing.T) {
	r := newRayRig(t, execute.JobTemplate{})
	req := rayRequest(t, func(data map[string]any) { constraints(data)["rounds"] = 1; constraints(data)["peers"] = 1 })
	id := council.DeliberationID(req.Source(), req.ID())
	sid := id + "-1"
	r.handle(t, req)
	r.runner.SetState(sid, council.JobRunning, "")
	agent := &execute.Agent{Store: r.store, Emitter: r.em, LLM: &counciltest.Completer{}, Now: r.clock.Now}
	if d, err := agent.RunStored(r.ctx, id); err != nil || d.Status != council.StatusCompleted {
		t.Fatalf("agent: %v", err)
	}
	r.runner.SetLogs(sid, "council-agent: deliberation "+id+" completed\n")
	r.runner.SetState(sid, council.JobSucceeded, "done")
	r.tick(t, time.Second) // ended: state and logs recorded, too early to delete
	d := r.get(t, id)
	if !d.Job.LogsRecorded || !strings.Contains(d.Job.LogTail, "completed") || d.Job.State != council.JobSucceeded {
		t.Fatalf("job after a sweep: %+v; want SUCCEEDED with its logs", d.Job)
	}
	if len(r.runner.Deletes()) != 0 || !d.Owes() {
		t.Fatalf("deleted %v within %s of the end (owes %v)", r.runner.Deletes(), council.JobDeleteAfter, d.Owes())
	}
	r.tick(t, council.JobDeleteAfter)
	if diff := cmp.Diff([]string{sid}, r.runner.Deletes()); diff != "" {
		t.Fatalf("deletes (-want +got):\n%s", diff)
	}
	if d := r.get(t, id); !d.Job.Deleted || d.Owes() {
		t.Errorf("after the deletion: job %+v, owes %v; want deleted, owing nothing", d.Job, d.Owes())
	}
	if _, err := r.runner.Get(r.ctx, sid); !errors.Is(err, council.ErrNotFound) {
		t.Errorf("job %s still known to the runner: %v", sid, err)
	}
}

func TestRayLostJobIsSubmittedAgainAndRayDownIsRetried(t *testing.T) {
	r := newRayRig(t, execute.JobTemplate{})
	req := rayRequest(t, nil)
	id := council.DeliberationID(req.Source(), req.ID())
	r.handle(t, req)

	// Ray unreachable: the sweep fails (the tick is delivered again) and
	// changes nothing.
	r.runner.GetFunc = func(context.Context, string) (council.JobInfo, error) {
		return council.JobInfo{}, council.Unavailablef("connection refused")
	}
	if _, err := r.f.Handle(r.ctx, fixture(t, "sweep.tick.v1/valid/tick.json")); !errors.Is(err, council.ErrUnavailable) {
		t.Errorf("sweep with Ray down: %v, want ErrUnavailable", err)
	}
	// A restarted head forgot the job: as good as failed, so attempt 2.
	r.runner.GetFunc = func(context.Context, string) (council.JobInfo, error) {
		return council.JobInfo{}, fmt.Errorf("rayjobs: get: %w", council.ErrNotFound)
	}
	r.tick(t, time.Second)
	if d := r.get(t, id); d.Job.Attempt != 2 || d.Status != council.StatusRunning {
		t.Errorf("after the job vanished: %s, job %+v; want running with attempt 2", d.Status, d.Job)
	}
}

func TestRayJobOfAnEndedDeliberationIsStopped(t *testing.T) {
	r := newRayRig(t, execute.JobTemplate{})
	req := rayRequest(t, func(data map[string]any) { constraints(data)["timeout_seconds"] = 10 })
	id := council.DeliberationID(req.Source(), req.ID())
	r.handle(t, req)
	r.runner.SetState(id+"-1", council.JobRunning, "")
	stopDown := true
	r.runner.StopFunc = func(context.Context, string) error {
		if stopDown {
			return council.Unavailablef("connection refused")
		}
		r.runner.SetState(id+"-1", council.JobStopped, "stopped")
		return nil
	}
	r.tick(t, 11*time.Second)
	d := r.get(t, id)
	if d.Status != council.StatusFailed || !strings.Contains(d.Job.Message, "stop failed") {
		t.Fatalf("timeout with Ray unreachable: %s, job %+v; want failed, and the failed stop noted", d.Status, d.Job)
	}
	// A later sweep stops the job that still runs, then records it stopped.
	stopDown = false
	r.tick(t, time.Second)
	r.tick(t, time.Second)
	if n := len(r.runner.Stops()); n != 2 {
		t.Errorf("%d stop calls, want 2 (the failed one and the retry)", n)
	}
	if d := r.get(t, id); d.Job.State != council.JobStopped {
		t.Errorf("job state %s, want STOPPED", d.Job.State)
	}
	if n := len(r.em.Types()); n != 1 {
		t.Errorf("%d events, want the 1 failed event", n)
	}
}
