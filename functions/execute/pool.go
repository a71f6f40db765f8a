package execute

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"strconv"
	"time"

	"council.dev/shared/council"
)

// The warm pool mode of backend ray (ADR 10). execute keeps Min to Max
// long-lived Ray jobs of council-agent workers running (PoolJobID: one
// slot each, as many as the queue asks for) and puts each backend ray
// deliberation on a JetStream work queue instead of submitting a Ray job of
// its own; a worker takes it within milliseconds, runs it from the stored
// state and records the outcome, as a job would. A worker that dies stops
// reporting progress, and the queue gives the deliberation to another.

// PoolQueue is the pool's work queue (natsjs.PoolQueue).
type PoolQueue interface {
	// Enqueue puts run (the pool run, council.JobRef.SubmissionID) of
	// deliberation id on the queue; the same run again is dropped.
	Enqueue(ctx context.Context, id, run string) error
	// Pending returns how many deliberations wait for a worker or run.
	Pending(ctx context.Context) (uint64, error)
}

// RayPool configures the warm pool.
type RayPool struct {
	Queue PoolQueue
	// Min and Max bound the pool's Ray jobs: Min run always, up to Max as
	// the queue grows (one per Workers deliberations waiting or running).
	Min, Max int
	// Workers is how many deliberations one pool job runs at once.
	Workers int
	// AckWait is how long a worker may stay silent before its deliberation
	// goes to another (0: the queue's default).
	AckWait time.Duration
}

// PoolFlag is the command-line flag that runs council-agent as pool workers.
const PoolFlag = "-pool"

// WithRayPool runs backend ray in the warm pool p, whose jobs the job
// runner of WithJobRunner starts (from its template: same working
// directory and environment, the entrypoint with PoolFlag). Deliberations
// already following a Ray job of their own keep it.
func WithRayPool(p RayPool) Option {
	return func(f *Function) error {
		if p.Queue == nil {
			return errors.New("ray pool: nil queue")
		}
		if p.Min < 1 || p.Max < p.Min || p.Workers < 1 {
			return fmt.Errorf("ray pool: min %d, max %d, workers %d: want 1 <= min <= max and workers >= 1", p.Min, p.Max, p.Workers)
		}
		f.pool = &p
		return nil
	}
}

// PoolRunID is the id of attempt (from 1) of deliberation id's run in the
// pool: the work item's message id.
func PoolRunID(id string, attempt int) string { return "pool-" + id + "-" + strconv.Itoa(attempt) }

// PoolJobID is the submission id of the pool's Ray job in slot (from 0).
func PoolJobID(slot int) string { return "council-pool-" + strconv.Itoa(slot) }

// ensurePoolRun puts d on the pool's queue unless it has ended or is
// there: recorded first as being queued, then queued, then recorded as
// waiting (PENDING); a crash in between leaves it being queued, which the
// sweep queues again (the queue drops the duplicate).
func (f *Function) ensurePoolRun(ctx context.Context, d *council.Deliberation) (*council.Deliberation, error) {
	if d.Status.Terminal() || (d.Job != nil && d.Job.State != council.JobSubmitting) {
		return d, nil
	}
	attempt := 1
	if d.Job != nil {
		attempt = d.Job.Attempt
	}
	run := PoolRunID(d.ID, attempt)
	if d.Job == nil {
		var err error
		if d, err = f.outbox.Apply(ctx, d.ID, func(d *council.Deliberation) (bool, error) {
			return d.BeginPoolRun(run, attempt, f.now()), nil
		}); err != nil {
			return d, err
		}
		if d.Status.Terminal() || d.Job == nil || d.Job.SubmissionID != run || d.Job.State != council.JobSubmitting {
			return d, nil
		}
	}
	if err := f.pool.Queue.Enqueue(ctx, d.ID, run); err != nil {
		return d, fmt.Errorf("execute: deliberation %s: %w", d.ID, err)
	}
	f.log.Info("deliberation queued for the ray pool", "deliberation", d.ID, "task_id", d.Task.ID, "run", run)
	f.poolGrow(ctx)
	return f.outbox.Apply(ctx, d.ID, func(d *council.Deliberation) (bool, error) {
		return d.JobSubmitted(run, council.JobInfo{State: council.JobPending}), nil
	})
}

// sweepPoolRun follows the pool run of a running deliberation d: its
// deadline fails it (the worker's context ends at the deadline too); a run
// left being queued for SubmitGrace is queued again. A worker that dies is
// the queue's business: it gives the deliberation to another worker.
func (f *Function) sweepPoolRun(ctx context.Context, d *council.Deliberation) error {
	now := f.now()
	run := d.Job.SubmissionID
	if !now.Before(d.Deadline) {
		return f.apply(ctx, d.ID, func(d *council.Deliberation) (bool, error) {
			if d.Status.Terminal() || now.Before(d.Deadline) {
				return false, nil
			}
			return d.Fail(fmt.Sprintf("timeout: timeout_seconds=%d elapsed; pool run %s ended",
				int(d.Task.Constraints.Timeout.Seconds()), run), now), nil
		})
	}
	if d.Job.State == council.JobSubmitting && now.Sub(d.Job.SubmittedAt) >= SubmitGrace {
		_, err := f.ensurePoolRun(ctx, d)
		return err
	}
	return nil
}

// EnsurePool keeps the pool's Ray jobs running: slots below what the queue
// asks for (one job per Workers deliberations waiting or running, between
// Min and Max) are started, ended ones deleted and started again, and jobs
// above Min are stopped once nothing waits or runs. Without a pool it does
// nothing.
func (f *Function) EnsurePool(ctx context.Context) error {
	p := f.pool
	if p == nil || f.jobs == nil {
		return nil
	}
	want, idle := p.Min, false
	if pending, err := p.Queue.Pending(ctx); err == nil {
		want = min(max(int((pending+uint64(p.Workers)-1)/uint64(p.Workers)), p.Min), p.Max)
		idle = pending == 0
	} else {
		f.log.Warn("ray pool: queue", "error", err)
	}
	var errs []error
	for slot := range p.Max {
		sid := PoolJobID(slot)
		info, err := f.jobs.Get(ctx, sid)
		switch {
		case errors.Is(err, council.ErrNotFound):
		case err != nil:
			errs = append(errs, err)
			continue
		case !info.State.Terminal():
			if slot >= p.Min && idle {
				f.log.Info("ray pool: stopping an idle job", "submission_id", sid)
				if err := f.jobs.Stop(ctx, sid); err != nil && !errors.Is(err, council.ErrNotFound) {
					errs = append(errs, err)
				}
			}
			continue
		default:
			// Ended: out of the cluster (once Ray lets it go), so that
			// the slot's id can be used again.
			if f.now().Sub(info.EndTime) < council.JobDeleteAfter {
				continue
			}
			tail, _ := f.logTail(ctx, sid)
			f.log.Warn("ray pool: job ended", "submission_id", sid, "state", info.State, "message", info.Message, "logs", tail)
			if err := f.jobs.Delete(ctx, sid); err != nil && !errors.Is(err, council.ErrNotFound) {
				errs = append(errs, err)
				continue
			}
		}
		if slot >= want {
			continue
		}
		if _, err := f.jobs.Submit(ctx, f.poolJobSpec(sid)); err != nil {
			errs = append(errs, fmt.Errorf("execute: start ray pool job %s: %w", sid, err))
			continue
		}
		f.log.Info("ray pool: job started", "submission_id", sid, "workers", p.Workers)
	}
	return errors.Join(errs...)
}

// poolCheckEvery bounds how often a queued deliberation makes execute
// check the pool's jobs (EnsurePool) between sweeps.
const poolCheckEvery = 5 * time.Second

// poolGrow runs EnsurePool, in the background, when it has not run for
// poolCheckEvery: a burst of deliberations starts the jobs it needs before
// the next sweep, and no request waits for Ray's answers.
func (f *Function) poolGrow(ctx context.Context) {
	f.poolMu.Lock()
	due := !f.poolGrowing && f.now().Sub(f.poolChecked) >= poolCheckEvery
	if due {
		f.poolChecked, f.poolGrowing = f.now(), true
	}
	f.poolMu.Unlock()
	if !due {
		return
	}
	go func() {
		defer func() {
			f.poolMu.Lock()
			f.poolGrowing = false
			f.poolMu.Unlock()
		}()
		gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := f.EnsurePool(gctx); err != nil {
			f.log.Warn("ray pool", "error", err)
		}
	}()
}

// poolJobSpec describes the pool's job sid: the template's, running
// council-agent as pool workers.
func (f *Function) poolJobSpec(sid string) council.JobSpec {
	entry := f.job.Entrypoint + " " + PoolFlag + " -workers " + strconv.Itoa(f.pool.Workers)
	if f.pool.AckWait > 0 {
		entry += " -ack-wait " + f.pool.AckWait.String()
	}
	spec := council.JobSpec{
		SubmissionID: sid, Entrypoint: entry, WorkingDir: f.job.WorkingDir,
		Env: maps.Clone(f.job.Env), Metadata: maps.Clone(f.job.Metadata),
	}
	if spec.Metadata == nil {
		spec.Metadata = map[string]string{}
	}
	spec.Metadata["council_role"] = "pool"
	return spec
}

// RunPooled runs deliberation id as a pool worker: it records the run as
// RUNNING (by this worker), runs the deliberation from the stored state
// (RunStored) within its deadline, and records how the run ended. A
// deliberation already ended, or whose deadline passes, is done with (nil:
// execute fails it at its deadline). It returns an error wrapping
// council.ErrInvalid when no such deliberation is stored, and one the
// queue retries otherwise.
func (a *Agent) RunPooled(ctx context.Context, id string) error {
	d, _, err := a.Store.Get(ctx, id)
	if err != nil {
		if errors.Is(err, council.ErrNotFound) {
			return fmt.Errorf("execute: pool: %w", council.Invalidf("no deliberation %s is stored", id))
		}
		return fmt.Errorf("execute: pool: %w", err)
	}
	if d.Status.Terminal() {
		return nil
	}
	now := a.Now
	if now == nil {
		now = time.Now
	}
	outbox, err := NewOutbox(a.Store, a.Emitter, "council.dev/council-agent", now, a.Log)
	if err != nil {
		return err
	}
	run := ""
	if d.Job != nil {
		run = d.Job.SubmissionID
	}
	host, _ := os.Hostname()
	observe := func(state council.JobState, msg string, ended time.Time) {
		if run == "" {
			return
		}
		if _, err := outbox.Apply(ctx, id, func(d *council.Deliberation) (bool, error) {
			return d.ObserveJob(run, state, msg, ended), nil
		}); err != nil && a.Log != nil {
			a.Log.Warn("pool: run state not recorded", "deliberation", id, "error", err)
		}
	}
	observe(council.JobRunning, fmt.Sprintf("worker %s pid %d", host, os.Getpid()), time.Time{})
	rctx, cancel := context.WithDeadline(ctx, d.Deadline)
	defer cancel()
	out, err := a.RunStored(rctx, id)
	switch {
	case err != nil && ctx.Err() == nil && rctx.Err() != nil:
		return nil // its deadline passed: execute fails it
	case err != nil:
		return err
	}
	state := council.JobSucceeded
	if out.Status != council.StatusCompleted {
		state = council.JobFailed
	}
	observe(state, Summary(out), now())
	return nil
}
