package execute

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"
	"unicode/utf8"

	"council.dev/shared/council"
)

// The environment of a council-agent job, besides the COUNCIL_* variables
// of the host configuration (NATS URL, LLM URL and model, ...).
const (
	// EnvDeliberationID holds the id of the deliberation the job runs:
	// all a job execute submits is told (it reads the task from the state).
	EnvDeliberationID = "COUNCIL_DELIBERATION_ID"
	// EnvRequest holds, for a job started by hand, the
	// deliberation.requested event, a structured CloudEvent in JSON,
	// base64-encoded.
	EnvRequest = "COUNCIL_REQUEST"
	// EnvRequestFile names, for a job started by hand, a file relative to
	// the job's working directory that holds the deliberation.requested
	// event (structured JSON).
	EnvRequestFile = "COUNCIL_REQUEST_FILE"
)

// Defaults of a JobTemplate.
const (
	DefaultEntrypoint  = "./council-agent"
	DefaultResultGrace = 30 * time.Second
	DefaultLogLines    = 20
	// maxLogTail bounds the log lines quoted in a failure reason.
	maxLogTail = 4 << 10
)

// JobTemplate describes the Ray job that runs a backend ray deliberation.
// Resources reserved for the job are the runner's business (see
// rayjobs.WithEntrypointResources).
type JobTemplate struct {
	// Entrypoint is the command the job runs in its working directory
	// (default DefaultEntrypoint).
	Entrypoint string
	// WorkingDir is the job's working directory: a local directory that
	// holds the council-agent binary (the runner uploads it) or a URI the
	// cluster can fetch.
	WorkingDir string
	// Env is added to every job's environment: COUNCIL_NATS_URL,
	// COUNCIL_LLM_URL, COUNCIL_LLM_MODEL and the other COUNCIL_LLM_*.
	Env map[string]string
	// Metadata labels every job (the deliberation and task ids are added).
	Metadata map[string]string
	// ResultGrace is how long after a job SUCCEEDED its result may take to
	// show in the state before the deliberation fails (default
	// DefaultResultGrace).
	ResultGrace time.Duration
	// LogLines is how many of a failed job's last log lines the failure
	// reason quotes (default DefaultLogLines).
	LogLines int
}

func (t JobTemplate) withDefaults() JobTemplate {
	if t.Entrypoint == "" {
		t.Entrypoint = DefaultEntrypoint
	}
	if t.ResultGrace <= 0 {
		t.ResultGrace = DefaultResultGrace
	}
	if t.LogLines <= 0 {
		t.LogLines = DefaultLogLines
	}
	t.Env, t.Metadata = maps.Clone(t.Env), maps.Clone(t.Metadata)
	return t
}

// WithJobRunner runs deliberations that ask for backend ray as jobs of
// runner, described by spec. Without it such requests are rejected as
// invalid. The reason of a failed job quotes the end of its logs. A nil
// runner is an error.
func WithJobRunner(runner council.JobRunner, spec JobTemplate) Option {
	return func(f *Function) error {
		if runner == nil {
			return errors.New("nil job runner")
		}
		f.jobs, f.job = runner, spec
		return nil
	}
}

// SubmissionID is the Ray submission id of attempt (from 1) of deliberation id.
func SubmissionID(id string, attempt int) string { return fmt.Sprintf("%s-%d", id, attempt) }

// ensureJob submits the first job of d unless d has one or has ended; a
// job recorded as being submitted (a crash or an error in between) is
// submitted again under the same submission id, which finds it if the
// cluster has it.
func (f *Function) ensureJob(ctx context.Context, d *council.Deliberation) (*council.Deliberation, error) {
	if (d.Job == nil && f.pool != nil) || (d.Job != nil && d.Job.Pool) {
		if f.pool == nil {
			return d, nil // queued by a pool execute no longer runs: its deadline ends it
		}
		return f.ensurePoolRun(ctx, d)
	}
	switch {
	case d.Status.Terminal():
		return d, nil
	case d.Job == nil:
		return f.submitJob(ctx, d, 1)
	case d.Job.State == council.JobSubmitting:
		return f.submitJob(ctx, d, d.Job.Attempt)
	}
	return d, nil
}

// SubmitGrace is how long a job recorded as being submitted may stay
// unknown to the cluster before the sweep submits it again (under the same
// submission id: the cluster answers the existing job if the first request
// got through meanwhile).
const SubmitGrace = time.Minute

// submitJob submits attempt of d's job. The job is recorded as being
// submitted first (council.Deliberation.BeginJob), so that a sweep meanwhile
// asks the cluster about it instead of submitting another; then the
// cluster's answer is recorded. Submitting is idempotent on the submission
// id, so racing submitters (a retried request, a sweep) end up with the same
// job. A job the runner refuses for good fails the deliberation.
func (f *Function) submitJob(ctx context.Context, d *council.Deliberation, attempt int) (*council.Deliberation, error) {
	sid := SubmissionID(d.ID, attempt)
	if d.Job == nil || d.Job.SubmissionID != sid {
		var err error
		d, err = f.outbox.Apply(ctx, d.ID, func(d *council.Deliberation) (bool, error) {
			return d.BeginJob(sid, attempt, f.now()), nil
		})
		if err != nil {
			return d, err
		}
		if d.Status.Terminal() || d.Job == nil || d.Job.SubmissionID != sid || d.Job.State != council.JobSubmitting {
			return d, nil // ended, or another attempt or submitter went further
		}
	}
	info, err := f.jobs.Submit(ctx, f.jobSpec(d, sid))
	if err != nil {
		if council.Retryable(err) {
			return d, fmt.Errorf("execute: deliberation %s: submit ray job %s: %w", d.ID, sid, err)
		}
		f.log.Error("ray job refused", "deliberation", d.ID, "submission_id", sid, "error", err)
		return f.outbox.Apply(ctx, d.ID, func(d *council.Deliberation) (bool, error) {
			return d.Fail(fmt.Sprintf("ray job %s could not be submitted: %v", sid, err), f.now()), nil
		})
	}
	f.log.Info("ray job submitted", "deliberation", d.ID, "task_id", d.Task.ID,
		"submission_id", sid, "attempt", attempt, "state", info.State)
	return f.outbox.Apply(ctx, d.ID, func(d *council.Deliberation) (bool, error) {
		return d.JobSubmitted(sid, info), nil
	})
}

// jobSpec describes the job of d with submission id sid: the deliberation
// id is all it carries (the job reads the task from the stored state), so
// every job has the same runtime environment and working directory, which
// the runner uploads once.
func (f *Function) jobSpec(d *council.Deliberation, sid string) council.JobSpec {
	spec := council.JobSpec{
		SubmissionID: sid,
		Entrypoint:   f.job.Entrypoint,
		Env:          maps.Clone(f.job.Env),
		WorkingDir:   f.job.WorkingDir,
		Metadata:     maps.Clone(f.job.Metadata),
	}
	if spec.Env == nil {
		spec.Env = map[string]string{}
	}
	if spec.Metadata == nil {
		spec.Metadata = map[string]string{}
	}
	spec.Env[EnvDeliberationID] = d.ID
	spec.Metadata["deliberation_id"] = d.ID
	spec.Metadata["task_id"] = d.Task.ID
	return spec
}

// sweepJob follows the job of a running backend ray deliberation d (as
// listed; every decision is taken again on the current state):
//
//   - no job yet (a crash between storing and submitting): submit it;
//   - being submitted: ask the cluster; unknown to it for SubmitGrace,
//     submit it again under the same submission id;
//   - timeout_seconds passed: stop the job and fail the deliberation;
//   - PENDING or RUNNING: record the state;
//   - SUCCEEDED: the job records the result itself; if none shows within
//     the result grace, fail the deliberation;
//   - FAILED or STOPPED (or gone from the cluster): submit the next attempt
//     while attempts ≤ max_retries (0: never), else fail the deliberation
//     with the job's message and the end of its logs.
func (f *Function) sweepJob(ctx context.Context, d *council.Deliberation) error {
	if d.Job == nil {
		_, err := f.ensureJob(ctx, d)
		return err
	}
	if d.Job.Pool {
		return f.sweepPoolRun(ctx, d)
	}
	job := *d.Job
	sid := job.SubmissionID
	now := f.now()
	// same reports whether the current state still follows this job.
	same := func(d *council.Deliberation) bool {
		return !d.Status.Terminal() && d.Job != nil && d.Job.SubmissionID == sid
	}
	if !now.Before(d.Deadline) {
		stopErr := f.jobs.Stop(ctx, sid)
		if stopErr != nil && !errors.Is(stopErr, council.ErrNotFound) {
			// Fail anyway: the deadline is the caller's promise. The job
			// finds the deliberation ended and records nothing.
			f.log.Warn("ray job not stopped", "deliberation", d.ID, "submission_id", sid, "error", stopErr)
		}
		return f.apply(ctx, d.ID, func(d *council.Deliberation) (bool, error) {
			if d.Status.Terminal() || now.Before(d.Deadline) {
				return false, nil
			}
			if d.Job != nil && d.Job.SubmissionID == sid {
				d.Job.Message = "stopped: timeout"
				if stopErr != nil && !errors.Is(stopErr, council.ErrNotFound) {
					d.Job.Message = "stop failed: " + stopErr.Error()
				}
			}
			return d.Fail(fmt.Sprintf("timeout: timeout_seconds=%d elapsed; ray job %s (attempt %d) stopped",
				int(d.Task.Constraints.Timeout.Seconds()), sid, job.Attempt), now), nil
		})
	}
	info, err := f.jobs.Get(ctx, sid)
	switch {
	case errors.Is(err, council.ErrNotFound) && job.State == council.JobSubmitting:
		if now.Sub(job.SubmittedAt) < SubmitGrace {
			return nil // its submission may still be under way
		}
		_, err := f.submitJob(ctx, d, job.Attempt)
		return err
	case errors.Is(err, council.ErrNotFound):
		// The cluster lost the job (a restarted head): as good as failed.
		info = council.JobInfo{SubmissionID: sid, State: council.JobFailed, Message: "the job is gone from the cluster"}
	case err != nil:
		return fmt.Errorf("execute: deliberation %s: ray job %s: %w", d.ID, sid, err)
	}
	ended := info.EndTime
	if ended.IsZero() {
		ended = job.EndedAt
	}
	if ended.IsZero() && info.State.Terminal() {
		ended = now
	}
	switch info.State {
	case council.JobSucceeded:
		if now.Sub(ended) < f.job.ResultGrace {
			return f.recordJob(ctx, d.ID, sid, info, ended)
		}
		return f.apply(ctx, d.ID, func(d *council.Deliberation) (bool, error) {
			if !same(d) {
				return false, nil
			}
			d.ObserveJob(sid, info.State, info.Message, ended)
			return d.Fail(fmt.Sprintf("ray job %s succeeded without a result (none recorded %s after it ended)",
				sid, f.job.ResultGrace), now), nil
		})
	case council.JobFailed, council.JobStopped:
		if job.Attempt <= d.Task.Constraints.MaxRetries {
			cur, _, err := f.store.Get(ctx, d.ID)
			if err != nil {
				return fmt.Errorf("execute: load deliberation %s: %w", d.ID, err)
			}
			if !same(cur) || cur.Job.Attempt != job.Attempt {
				return nil
			}
			f.log.Warn("ray job ended, submitting again", "deliberation", d.ID, "submission_id", sid,
				"state", info.State, "message", info.Message, "attempt", job.Attempt+1)
			_, err = f.submitJob(ctx, cur, job.Attempt+1)
			return err
		}
		reason := fmt.Sprintf("ray job %s %s (attempt %d, max_retries %d): %s",
			sid, info.State, job.Attempt, d.Task.Constraints.MaxRetries, orNone(info.Message))
		tail, logsRead := f.logTail(ctx, sid)
		if tail != "" {
			reason += "\nlast log lines:\n" + tail
		}
		return f.apply(ctx, d.ID, func(d *council.Deliberation) (bool, error) {
			if !same(d) {
				return false, nil
			}
			d.ObserveJob(sid, info.State, info.Message, ended)
			if logsRead {
				d.RecordJobLogs(sid, tail)
			}
			return d.Fail(reason, now), nil
		})
	default:
		return f.recordJob(ctx, d.ID, sid, info, time.Time{})
	}
}

// settleJob follows the job of an ended deliberation d until the job is
// gone from the cluster: a job still running for a failed deliberation (a
// stop that did not get through) is stopped; an ended job's last state and
// the end of its logs are recorded, and then it is deleted from the
// cluster, JobDeleteAfter after it ended (with a timer, execute comes back
// for it then; without, the next sweep does).
func (f *Function) settleJob(ctx context.Context, d *council.Deliberation) error {
	j := d.Job
	if j == nil || j.Pool || j.Deleted {
		return nil
	}
	sid := j.SubmissionID
	if !j.State.Terminal() {
		info, err := f.jobs.Get(ctx, sid)
		switch {
		case errors.Is(err, council.ErrNotFound):
			info = council.JobInfo{SubmissionID: sid, State: council.JobFailed, Message: "the job is gone from the cluster"}
		case err != nil:
			return fmt.Errorf("execute: deliberation %s: ray job %s: %w", d.ID, sid, err)
		}
		if !info.State.Terminal() {
			if d.Status == council.StatusFailed || d.Status == council.StatusCancelled {
				if err := f.jobs.Stop(ctx, sid); err != nil && !errors.Is(err, council.ErrNotFound) {
					return fmt.Errorf("execute: deliberation %s: stop ray job %s: %w", d.ID, sid, err)
				}
			}
			return nil
		}
		ended := info.EndTime
		if ended.IsZero() {
			ended = f.now()
		}
		if d, err = f.outbox.Apply(ctx, d.ID, func(d *council.Deliberation) (bool, error) {
			return d.ObserveJob(sid, info.State, info.Message, ended), nil
		}); err != nil {
			return err
		}
	}
	if d.Job == nil || d.Job.SubmissionID != sid || d.Job.Deleted {
		return nil
	}
	if !d.Job.LogsRecorded {
		tail, ok := f.logTail(ctx, sid)
		if !ok {
			return nil // the next sweep reads them
		}
		var err error
		if d, err = f.outbox.Apply(ctx, d.ID, func(d *council.Deliberation) (bool, error) {
			return d.RecordJobLogs(sid, tail), nil
		}); err != nil {
			return err
		}
		if d.Job == nil || d.Job.SubmissionID != sid {
			return nil
		}
	}
	if now := f.now(); !d.JobDeletable(sid, now) {
		if f.timer != nil && d.Job.State.Terminal() && !d.Job.Deleted {
			if err := f.timer.At(ctx, d.Job.EndedAt.Add(council.JobDeleteAfter), f.tickOf(d.ID, "settle")); err != nil {
				f.log.Warn("ray job deletion timer", "deliberation", d.ID, "error", err)
			}
		}
		return nil
	}
	if err := f.jobs.Delete(ctx, sid); err != nil && !errors.Is(err, council.ErrNotFound) {
		return fmt.Errorf("execute: deliberation %s: delete ray job %s: %w", d.ID, sid, err)
	}
	f.log.Info("ray job deleted", "deliberation", d.ID, "submission_id", sid)
	return f.apply(ctx, d.ID, func(d *council.Deliberation) (bool, error) {
		return d.JobDeleted(sid), nil
	})
}

// recordJob records what the cluster said about job sid of deliberation id
// when it differs from the stored state.
func (f *Function) recordJob(ctx context.Context, id, sid string, info council.JobInfo, ended time.Time) error {
	return f.apply(ctx, id, func(d *council.Deliberation) (bool, error) {
		if d.Status.Terminal() {
			return false, nil
		}
		if d.Job != nil && d.Job.SubmissionID == sid && d.Job.State == council.JobSubmitting {
			return d.JobSubmitted(sid, info), nil
		}
		return d.ObserveJob(sid, info.State, info.Message, ended), nil
	})
}

// logTail returns the last lines of job sid's logs and true, or false
// when they cannot be read now (a job the cluster does not know has none:
// "", true).
func (f *Function) logTail(ctx context.Context, sid string) (string, bool) {
	out, err := f.jobs.Logs(ctx, sid)
	switch {
	case errors.Is(err, council.ErrNotFound):
		return "", true
	case err != nil:
		f.log.Warn("ray job logs", "submission_id", sid, "error", err)
		return "", false
	}
	return tail(out, f.job.LogLines, maxLogTail), true
}

// tail returns the last n lines of s, at most max bytes of them.
func tail(s string, n, max int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	out := strings.Join(lines, "\n")
	if len(out) > max {
		cut := len(out) - max
		for cut < len(out) && !utf8.RuneStart(out[cut]) {
			cut++
		}
		out = "…" + out[cut:]
	}
	return strings.TrimSpace(out)
}

func orNone(s string) string {
	if s == "" {
		return "no message"
	}
	return s
}
