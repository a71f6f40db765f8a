package council

import "time"

// The life of a deliberation's Ray job, as execute follows it (backend
// ray). Every method records one thing the cluster or execute did and
// reports whether d changed; each is a no-op when d has ended where that
// matters, or follows another job than the one named: a decision taken on
// an old read changes nothing.
//
//	BeginJob (SUBMITTING, recorded before the request to the cluster)
//	  → JobSubmitted (what the cluster answered: PENDING, RUNNING, ...)
//	  → ObserveJob (each state the sweep sees, until an end state)
//	  → RecordJobLogs (the end of an ended job's logs)
//	  → JobDeleted (removed from the cluster, once the above are recorded)

// JobSubmitting is the state of a job recorded before its submission: the
// cluster may or may not have it yet.
const JobSubmitting JobState = "SUBMITTING"

// JobDeleteAfter is how long after a job ended it may be deleted from the
// cluster: Ray watches a job's supervisor for about a second after the job
// ends and writes a new record when the old one is gone by then.
const JobDeleteAfter = 5 * time.Second

// BeginJob records attempt (from 1) of d's job, submission id sid, as being
// submitted, before the request to the cluster: a sweep that finds it then
// asks the cluster about sid instead of submitting another job. It does
// nothing when d has ended or already has this attempt or a later one.
func (d *Deliberation) BeginJob(sid string, attempt int, now time.Time) bool {
	if d.Status.Terminal() || (d.Job != nil && d.Job.Attempt >= attempt) {
		return false
	}
	d.Job = &JobRef{SubmissionID: sid, Attempt: attempt, State: JobSubmitting, SubmittedAt: now}
	return true
}

// JobSubmitted records the cluster's answer to the submission of job sid.
func (d *Deliberation) JobSubmitted(sid string, info JobInfo) bool {
	if d.Job == nil || d.Job.SubmissionID != sid || d.Job.State != JobSubmitting {
		return false
	}
	d.Job.State, d.Job.Message = info.State, info.Message
	if d.Job.State == "" || d.Job.State == JobSubmitting {
		d.Job.State = JobPending
	}
	return true
}

// ObserveJob records the state of job sid the cluster reports, with the
// time it ended (zero while it runs). An ended job stays ended.
func (d *Deliberation) ObserveJob(sid string, state JobState, message string, ended time.Time) bool {
	j := d.Job
	if j == nil || j.SubmissionID != sid || (j.State.Terminal() && j.State != state) {
		return false
	}
	if j.State == state && j.Message == message && j.EndedAt.Equal(ended) {
		return false
	}
	j.State, j.Message, j.EndedAt = state, message, ended
	return true
}

// RecordJobLogs records the end of the logs of job sid, which has ended.
func (d *Deliberation) RecordJobLogs(sid, tail string) bool {
	j := d.Job
	if j == nil || j.SubmissionID != sid || !j.State.Terminal() || j.LogsRecorded {
		return false
	}
	j.LogTail, j.LogsRecorded = tail, true
	return true
}

// JobDeletable reports whether job sid may be deleted from the cluster:
// d has ended, the job ended JobDeleteAfter ago or more, and its logs are
// recorded.
func (d *Deliberation) JobDeletable(sid string, now time.Time) bool {
	j := d.Job
	return d.Status.Terminal() && j != nil && j.SubmissionID == sid && j.State.Terminal() &&
		j.LogsRecorded && !j.Deleted && !now.Before(j.EndedAt.Add(JobDeleteAfter))
}

// JobDeleted records that job sid is gone from the cluster.
func (d *Deliberation) JobDeleted(sid string) bool {
	j := d.Job
	if j == nil || j.SubmissionID != sid || j.Deleted || !j.State.Terminal() {
		return false
	}
	j.Deleted = true
	return true
}

// jobOwed reports whether the job still needs execute: running, or ended
// and not yet deleted from the cluster (a pool run has nothing to delete).
func (j *JobRef) jobOwed() bool {
	return j != nil && (!j.State.Terminal() || (!j.Deleted && !j.Pool))
}

// BeginPoolRun records attempt (from 1) of d's run in the warm pool, run
// naming its work item, as being put on the queue (before it is): as
// BeginJob, for a run that is no Ray job of its own.
func (d *Deliberation) BeginPoolRun(run string, attempt int, now time.Time) bool {
	if !d.BeginJob(run, attempt, now) {
		return false
	}
	d.Job.Pool = true
	return true
}
