package execute

import (
	"context"
	"errors"

	"council.dev/shared/council"
)

// cancel ends deliberation id as cancelled (council.Deliberation.Cancel):
// the state first, with the one cancelled event in its outbox, then the
// event (ADR 1). A second cancel, or one of an ended deliberation, changes
// nothing. The Ray job of backend ray is then stopped (settleJob: Ray's
// POST /api/jobs/{id}/stop), and followed until it is deleted; a pool run
// is dropped by its worker, which finds the deliberation ended (at its
// next transition, or when it takes the work item). In-flight calls of
// generate and critique are not interrupted: their results are ignored.
func (f *Function) cancel(ctx context.Context, id, reason string) error {
	var changed bool
	d, err := f.outbox.Apply(ctx, id, func(d *council.Deliberation) (bool, error) {
		changed = d.Cancel(reason, f.now())
		return changed, nil
	})
	if err != nil {
		return err
	}
	if changed {
		f.log.Info("deliberation cancel", "deliberation", id, "task_id", d.Task.ID, "reason", d.Reason)
	}
	if d.Status == council.StatusCancelled && d.Task.Backend == council.BackendRay && f.jobs != nil {
		if err := f.settleJob(ctx, d); err != nil {
			// The cancel is recorded and sent; the sweep stops the job.
			f.log.Warn("ray job not stopped yet", "deliberation", id, "error", err)
		}
	}
	return nil
}

// errEndedElsewhere stops the engine of a job or pool worker whose
// deliberation ended in the store meanwhile (Agent.run).
var errEndedElsewhere = errors.New("the deliberation ended elsewhere")
