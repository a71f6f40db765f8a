package counciltest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"council.dev/shared/council"
)

// JobRunner is a fake council.JobRunner that keeps jobs in memory, like a
// cluster that never runs them: a submitted job stays PENDING until the
// test moves it with SetState. Submit is idempotent on the submission id,
// as the port requires. Each func field, when set, answers instead of the
// in-memory cluster. Logs answers from LogsFunc or the text given to
// SetLogs. Every call is recorded.
type JobRunner struct {
	SubmitFunc func(ctx context.Context, spec council.JobSpec) (council.JobInfo, error)
	GetFunc    func(ctx context.Context, submissionID string) (council.JobInfo, error)
	StopFunc   func(ctx context.Context, submissionID string) error
	LogsFunc   func(ctx context.Context, submissionID string) (string, error)
	DeleteFunc func(ctx context.Context, submissionID string) error
	// Now stamps job start and end times; nil means time.Now.
	Now func() time.Time

	mu      sync.Mutex
	jobs    map[string]council.JobInfo
	specs   map[string]council.JobSpec
	logs    map[string]string
	submits []string
	stops   []string
	deletes []string
}

var _ council.JobRunner = (*JobRunner)(nil)

func (r *JobRunner) init() {
	if r.jobs == nil {
		r.jobs, r.specs, r.logs = map[string]council.JobInfo{}, map[string]council.JobSpec{}, map[string]string{}
	}
}

func (r *JobRunner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Submit implements council.JobRunner.
func (r *JobRunner) Submit(ctx context.Context, spec council.JobSpec) (council.JobInfo, error) {
	r.mu.Lock()
	r.init()
	r.submits = append(r.submits, spec.SubmissionID)
	r.mu.Unlock()
	if r.SubmitFunc != nil {
		return r.SubmitFunc(ctx, spec)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if info, ok := r.jobs[spec.SubmissionID]; ok {
		return info, nil
	}
	info := council.JobInfo{
		SubmissionID: spec.SubmissionID, JobID: fmt.Sprintf("%08d", len(r.jobs)+1), State: council.JobPending,
		Entrypoint: spec.Entrypoint, Metadata: maps.Clone(spec.Metadata), StartTime: r.now(),
	}
	r.jobs[spec.SubmissionID] = info
	r.specs[spec.SubmissionID] = spec
	return info, nil
}

// Get implements council.JobRunner.
func (r *JobRunner) Get(ctx context.Context, submissionID string) (council.JobInfo, error) {
	if r.GetFunc != nil {
		return r.GetFunc(ctx, submissionID)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	info, ok := r.jobs[submissionID]
	if !ok {
		return council.JobInfo{}, fmt.Errorf("counciltest: job %s: %w", submissionID, council.ErrNotFound)
	}
	return info, nil
}

// Stop implements council.JobRunner: a job that has not ended becomes STOPPED.
func (r *JobRunner) Stop(ctx context.Context, submissionID string) error {
	r.mu.Lock()
	r.init()
	r.stops = append(r.stops, submissionID)
	r.mu.Unlock()
	if r.StopFunc != nil {
		return r.StopFunc(ctx, submissionID)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	info, ok := r.jobs[submissionID]
	if !ok {
		return fmt.Errorf("counciltest: stop job %s: %w", submissionID, council.ErrNotFound)
	}
	if !info.State.Terminal() {
		info.State, info.EndTime, info.Message = council.JobStopped, r.now(), "stopped"
		r.jobs[submissionID] = info
	}
	return nil
}

// Logs returns the job's output: LogsFunc's answer, or the text set with
// SetLogs. An unknown job is council.ErrNotFound.
func (r *JobRunner) Logs(ctx context.Context, submissionID string) (string, error) {
	if r.LogsFunc != nil {
		return r.LogsFunc(ctx, submissionID)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.jobs[submissionID]; !ok {
		return "", fmt.Errorf("counciltest: logs of job %s: %w", submissionID, council.ErrNotFound)
	}
	return r.logs[submissionID], nil
}

// Delete implements council.JobRunner: an ended job is removed; one that
// runs is council.ErrConflict, an unknown one council.ErrNotFound.
func (r *JobRunner) Delete(ctx context.Context, submissionID string) error {
	r.mu.Lock()
	r.init()
	r.deletes = append(r.deletes, submissionID)
	r.mu.Unlock()
	if r.DeleteFunc != nil {
		return r.DeleteFunc(ctx, submissionID)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	info, ok := r.jobs[submissionID]
	switch {
	case !ok:
		return fmt.Errorf("counciltest: delete job %s: %w", submissionID, council.ErrNotFound)
	case !info.State.Terminal():
		return fmt.Errorf("counciltest: delete job %s, %s: %w", submissionID, info.State, council.ErrConflict)
	}
	delete(r.jobs, submissionID)
	delete(r.specs, submissionID)
	delete(r.logs, submissionID)
	return nil
}

// Deletes returns the submission ids passed to Delete, in order.
func (r *JobRunner) Deletes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.deletes)
}

// SetState moves job submissionID to state with message; a terminal state
// gets the end time now. It reports whether the job exists.
func (r *JobRunner) SetState(submissionID string, state council.JobState, message string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	info, ok := r.jobs[submissionID]
	if !ok {
		return false
	}
	info.State, info.Message = state, message
	if state.Terminal() {
		info.EndTime = r.now()
	}
	r.jobs[submissionID] = info
	return true
}

// SetLogs sets the output Logs returns for job submissionID.
func (r *JobRunner) SetLogs(submissionID, logs string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.init()
	r.logs[submissionID] = logs
}

// Spec returns the spec job submissionID was first submitted with.
func (r *JobRunner) Spec(submissionID string) (council.JobSpec, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.specs[submissionID]
	return s, ok
}

// Jobs returns the submission ids of the jobs the cluster holds, sorted.
func (r *JobRunner) Jobs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Sorted(maps.Keys(r.jobs))
}

// Submits returns the submission ids of every Submit call, in order
// (repeats included).
func (r *JobRunner) Submits() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.submits)
}

// Stops returns the submission ids of every Stop call, in order.
func (r *JobRunner) Stops() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.stops)
}
