package council

import (
	"context"
	"time"
)

// JobState is the state of a Ray job, as Ray names it.
type JobState string

// Ray job states.
const (
	JobPending   JobState = "PENDING"
	JobRunning   JobState = "RUNNING"
	JobStopped   JobState = "STOPPED"
	JobSucceeded JobState = "SUCCEEDED"
	JobFailed    JobState = "FAILED"
)

// Terminal reports whether the job will not change state again.
func (s JobState) Terminal() bool {
	return s == JobStopped || s == JobSucceeded || s == JobFailed
}

// JobSpec describes a job to submit.
type JobSpec struct {
	// SubmissionID is deterministic (deliberation id + attempt), so that a
	// repeated submission finds the first one instead of starting a second.
	SubmissionID string
	Entrypoint   string
	// Env is added to the job's runtime environment.
	Env map[string]string
	// WorkingDir is a runtime_env working_dir (a local path or URI); empty for none.
	WorkingDir string
	Metadata   map[string]string
}

// JobInfo is what the cluster says about a job.
type JobInfo struct {
	SubmissionID string
	JobID        string
	State        JobState
	Message      string
	Entrypoint   string
	Metadata     map[string]string
	StartTime    time.Time
	EndTime      time.Time
	// WorkingDir is the job's working directory as the cluster has it (a
	// package URI once uploaded).
	WorkingDir string
}

// JobRunner is the port to the cluster that runs long deliberations (Ray).
//
// Submit is idempotent on SubmissionID: submitting an existing id returns that
// job. Get and Logs return ErrNotFound for an unknown id; Logs returns what
// the job has written so far (execute quotes its end when a job fails).
// Delete removes an ended job from the cluster (ErrNotFound for an unknown
// id, ErrConflict for a job that has not ended).
// Errors wrap ErrInvalid for a rejected request (4xx) and ErrUnavailable for
// an unreachable cluster or 5xx.
type JobRunner interface {
	Submit(ctx context.Context, spec JobSpec) (JobInfo, error)
	Get(ctx context.Context, submissionID string) (JobInfo, error)
	Stop(ctx context.Context, submissionID string) error
	Logs(ctx context.Context, submissionID string) (string, error)
	Delete(ctx context.Context, submissionID string) error
}
