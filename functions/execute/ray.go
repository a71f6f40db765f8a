package execute

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"council.dev/events"
	"council.dev/shared/council"
)

// The environment of a council-agent job, besides the COUNCIL_* variables
// of the host configuration (NATS URL, LLM URL and model, ...).
const (
	// EnvRequest holds the deliberation.requested event, a structured
	// CloudEvent in JSON, base64-encoded.
	EnvRequest = "COUNCIL_REQUEST"
	// EnvRequestFile names a file, relative to the job's working directory,
	// that holds the deliberation.requested event (structured JSON); execute
	// uses it for a request too large for an environment variable.
	EnvRequestFile = "COUNCIL_REQUEST_FILE"
	// EnvDeliberationID holds the id of the deliberation the job runs.
	EnvDeliberationID = "COUNCIL_DELIBERATION_ID"
)

// Defaults of a JobTemplate.
const (
	DefaultEntrypoint  = "./council-agent"
	DefaultResultGrace = 30 * time.Second
	DefaultLogLines    = 20
	// requestFile is the name of the request file in a job's working directory.
	requestFile = "council-request.json"
	// maxEnvRequest bounds COUNCIL_REQUEST: Linux refuses a single
	// environment string over 128 KiB.
	maxEnvRequest = 96 << 10
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

// ensureJob submits the first job of d unless d has one or has ended.
func (f *Function) ensureJob(ctx context.Context, d *council.Deliberation) (*council.Deliberation, error) {
	if d.Status.Terminal() || d.Job != nil {
		return d, nil
	}
	return f.submitJob(ctx, d, 1)
}

// submitJob submits attempt of d's job and records it in d.Job. Submitting
// is idempotent on the submission id, so racing submitters (a retried
// request, a sweep) end up with the same job. A job the runner refuses for
// good fails the deliberation.
func (f *Function) submitJob(ctx context.Context, d *council.Deliberation, attempt int) (*council.Deliberation, error) {
	sid := SubmissionID(d.ID, attempt)
	spec, cleanup, err := f.jobSpec(d, sid)
	var info council.JobInfo
	if err == nil {
		info, err = f.jobs.Submit(ctx, spec)
		cleanup()
	}
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
		if d.Status.Terminal() || (d.Job != nil && d.Job.Attempt >= attempt) {
			return false, nil
		}
		d.Job = &council.JobRef{
			SubmissionID: sid, Attempt: attempt, State: info.State, SubmittedAt: f.now(), Message: info.Message,
		}
		return true, nil
	})
}

// jobSpec describes the job of d with submission id sid. The request goes
// in COUNCIL_REQUEST, or, when too large for an environment variable and
// the working directory is local, in a file of a copy of that directory;
// cleanup removes the copy once the job is submitted.
func (f *Function) jobSpec(d *council.Deliberation, sid string) (council.JobSpec, func(), error) {
	body, err := events.EncodeEnvelope(events.NewRequest(f.source, d.ID+".request", d.Task, d.StartedAt))
	if err != nil {
		return council.JobSpec{}, func() {}, fmt.Errorf("encode the request of %s: %w", d.ID, err)
	}
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
	if enc := base64.StdEncoding.EncodeToString(body); len(enc) <= maxEnvRequest {
		spec.Env[EnvRequest] = enc
		return spec, func() {}, nil
	}
	if spec.WorkingDir == "" || strings.Contains(spec.WorkingDir, "://") {
		return council.JobSpec{}, func() {}, council.Invalidf(
			"the request of %s is %d bytes, too large for %s, and the job's working directory %q is not local",
			d.ID, len(body), EnvRequest, spec.WorkingDir)
	}
	dir, err := copyDir(spec.WorkingDir)
	if err != nil {
		return council.JobSpec{}, func() {}, council.Unavailablef("prepare the working directory of %s: %v", sid, err)
	}
	cleanup := func() { _ = os.RemoveAll(dir) }
	if err := os.WriteFile(filepath.Join(dir, requestFile), body, 0o600); err != nil {
		cleanup()
		return council.JobSpec{}, func() {}, council.Unavailablef("write the request of %s: %v", sid, err)
	}
	spec.WorkingDir = dir
	spec.Env[EnvRequestFile] = requestFile
	return spec, cleanup, nil
}

// copyDir copies the regular files under src into a new temporary directory.
func copyDir(src string) (string, error) {
	dst, err := os.MkdirTemp("", "council-job-")
	if err != nil {
		return "", err
	}
	err = filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case e.IsDir():
			return os.MkdirAll(target, 0o755)
		case !e.Type().IsRegular():
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer func() { _ = in.Close() }()
		out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, info.Mode().Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			_ = out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		_ = os.RemoveAll(dst)
		return "", err
	}
	return dst, nil
}

// sweepJob follows the job of a running backend ray deliberation d (as
// listed; every decision is taken again on the current state):
//
//   - no job yet (a crash between storing and submitting): submit it;
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
			d.Job.State, d.Job.EndedAt, d.Job.Message = info.State, ended, info.Message
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
		if tail := f.logTail(ctx, sid); tail != "" {
			reason += "\nlast log lines:\n" + tail
		}
		return f.apply(ctx, d.ID, func(d *council.Deliberation) (bool, error) {
			if !same(d) {
				return false, nil
			}
			d.Job.State, d.Job.EndedAt, d.Job.Message = info.State, ended, info.Message
			return d.Fail(reason, now), nil
		})
	default:
		return f.recordJob(ctx, d.ID, sid, info, time.Time{})
	}
}

// settleJob follows the job of an ended deliberation d until the job ends
// too: a job still running for a failed deliberation (a stop that did not
// get through) is stopped, and the job's last state is recorded.
func (f *Function) settleJob(ctx context.Context, d *council.Deliberation) error {
	if d.Job == nil || d.Job.State.Terminal() {
		return nil
	}
	sid := d.Job.SubmissionID
	info, err := f.jobs.Get(ctx, sid)
	switch {
	case errors.Is(err, council.ErrNotFound):
		info = council.JobInfo{SubmissionID: sid, State: council.JobFailed, Message: "the job is gone from the cluster"}
	case err != nil:
		return fmt.Errorf("execute: deliberation %s: ray job %s: %w", d.ID, sid, err)
	}
	if !info.State.Terminal() {
		if d.Status == council.StatusFailed {
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
	return f.apply(ctx, d.ID, func(d *council.Deliberation) (bool, error) {
		if d.Job == nil || d.Job.SubmissionID != sid || d.Job.State.Terminal() {
			return false, nil
		}
		d.Job.State, d.Job.Message, d.Job.EndedAt = info.State, info.Message, ended
		return true, nil
	})
}

// recordJob records what the cluster said about job sid of deliberation id
// when it differs from the stored state.
func (f *Function) recordJob(ctx context.Context, id, sid string, info council.JobInfo, ended time.Time) error {
	return f.apply(ctx, id, func(d *council.Deliberation) (bool, error) {
		if d.Status.Terminal() || d.Job == nil || d.Job.SubmissionID != sid {
			return false, nil
		}
		if d.Job.State == info.State && d.Job.Message == info.Message && d.Job.EndedAt.Equal(ended) {
			return false, nil
		}
		d.Job.State, d.Job.Message, d.Job.EndedAt = info.State, info.Message, ended
		return true, nil
	})
}

// logTail returns the last lines of job sid's logs, or "" when the read
// fails.
func (f *Function) logTail(ctx context.Context, sid string) string {
	out, err := f.jobs.Logs(ctx, sid)
	if err != nil {
		f.log.Warn("ray job logs", "submission_id", sid, "error", err)
		return ""
	}
	return tail(out, f.job.LogLines, maxLogTail)
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
