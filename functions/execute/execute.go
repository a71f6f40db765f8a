// Package execute is the coordinator of council. It validates
// deliberation.requested events, owns each deliberation's state (a Store with
// compare-and-set), fans work out to generate and critique through an
// Emitter, fans their results in, runs the rounds, ranks, and emits
// deliberation.completed or deliberation.failed.
//
// Every change follows the outbox pattern: the new state, with the keys of
// the events it implies, is stored first; then the events are sent (with
// deterministic ids, so a re-send is a duplicate the broker drops); then the
// keys are removed from the stored outbox. A crash at any point leaves the
// events in the outbox, and the next event or sweep sends them. Outbox is
// that pattern, shared with the Ray job.
//
// A request with backend ray (with WithJobRunner) is run by a Ray job,
// council-agent, which runs the same engine in-process and records its
// outcome in the same state through the same Outbox; execute submits the
// job, follows it on every sweep (state, retries, timeout) and fails the
// deliberation when the job cannot deliver.
//
// With WithLegacy, the end of a deliberation is also published on the old
// fleet's subjects (agent.response.*, one message per agent) by the same
// outbox step, before the end is acknowledged.
//
// The function also answers queries over HTTP (Routes, events/openapi.yaml): a
// deliberation's status, the service status with statistics, and the
// running deliberations. They read the durable state, never process memory.
package execute

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"council.dev/events"
	"council.dev/shared/council"
)

// Types returns the event types the function consumes (a new slice each call).
func Types() []string {
	return []string{
		events.TypeDeliberationRequested,
		events.TypeProposalGenerated, events.TypeProposalFailed,
		events.TypeCritiqueCompleted, events.TypeCritiqueFailed,
		events.TypeSweepTick, events.TypePing,
		events.TypeDeliberationCancel, events.TypeReviewDecided,
	}
}

// Function coordinates deliberations.
type Function struct {
	store       council.Store
	emitter     council.Emitter
	outbox      *Outbox
	source      string
	now         func() time.Time
	log         *slog.Logger
	resendAfter time.Duration
	started     time.Time
	// jobs runs backend ray deliberations; nil when not configured.
	jobs   council.JobRunner
	job    JobTemplate
	checks []check
	// legacy publishes the old fleet's agent responses; nil when off.
	legacy legacyPublisher
	// timer fires each deliberation's deadline; nil leaves it to the sweep.
	timer council.Timer
	// pool, when set, runs backend ray in the warm pool (WithRayPool);
	// poolChecked is when its jobs were last checked (poolGrow).
	pool        *RayPool
	poolMu      sync.Mutex
	poolChecked time.Time
	poolGrowing bool
	// maxEvent is the broker's largest message (0: unknown).
	maxEvent int64
	// models are the models a request may name (WithModels); nil: any.
	models []string
	// live feeds GET /deliberations/{id}/events (WithLive); nil: 501.
	live *liveSource
}

// Option configures a Function. New reports an option's error.
type Option func(*Function) error

// WithSource sets the CloudEvents source of emitted events (default
// council.dev/execute); it must not be empty.
func WithSource(source string) Option {
	return func(f *Function) error {
		if source == "" {
			return errors.New("empty source")
		}
		f.source = source
		return nil
	}
}

// WithClock sets the clock; it must not be nil.
func WithClock(now func() time.Time) Option {
	return func(f *Function) error {
		if now == nil {
			return errors.New("nil clock")
		}
		f.now = now
		return nil
	}
}

// WithLogger sets the logger; it must not be nil.
func WithLogger(l *slog.Logger) Option {
	return func(f *Function) error {
		if l == nil {
			return errors.New("nil logger")
		}
		f.log = l
		return nil
	}
}

// WithResendAfter sets how long a request may stay unanswered before a sweep
// sends it again (default 10 minutes); it must be positive (a zero would
// resend everything on every tick).
func WithResendAfter(d time.Duration) Option {
	return func(f *Function) error {
		if d <= 0 {
			return fmt.Errorf("resend after %s: want a positive duration", d)
		}
		f.resendAfter = d
		return nil
	}
}

// WithLegacy makes the function publish, when a deliberation ends, the old
// fleet's agent responses through p (legacy.Publisher) before the end is
// acknowledged in the outbox; a failure to publish them is a transient
// error, like a failure to emit. A nil p changes nothing.
func WithLegacy(p legacyPublisher) Option {
	return func(f *Function) error {
		f.legacy = p
		return nil
	}
}

// WithTimer makes the function set a durable timer for the deadline of
// each deliberation it accepts (council.Timer: a sweep.tick with the
// deliberation's id as subject, at its deadline), so that a deliberation
// fails on time whatever the sweep's period. A nil t changes nothing.
func WithTimer(t council.Timer) Option {
	return func(f *Function) error {
		f.timer = t
		return nil
	}
}

// WithMaxEventBytes sets the largest message the broker takes (its
// max_payload): a request whose result could be larger is refused when it
// arrives, naming the limit, rather than failing at its end. Zero (the
// default) leaves the check to the task's own bound (council.MaxResultBytes).
func WithMaxEventBytes(n int64) Option {
	return func(f *Function) error {
		if n < 0 {
			return fmt.Errorf("max event bytes %d: want 0 or more", n)
		}
		f.maxEvent = n
		return nil
	}
}

// WithModels sets the models a request may name (COUNCIL_LLM_MODEL and
// COUNCIL_LLM_MODELS): a request naming another — as its model, an agent's
// model or fallback model — is refused when it arrives (ErrInvalid: 400,
// or a dead letter on JetStream), naming the model, instead of being
// accepted and failing agent by agent. Without it every model is accepted
// here (as with an empty list) and the LLM client refuses what it does
// not allow.
func WithModels(allowed ...string) Option {
	return func(f *Function) error {
		if len(allowed) > 0 {
			f.models = slices.Clone(allowed)
		}
		return nil
	}
}

// New returns a Function over store and emitter.
func New(store council.Store, emitter council.Emitter, opts ...Option) (*Function, error) {
	if store == nil || emitter == nil {
		return nil, errors.New("execute: a Store and an Emitter are required")
	}
	f := &Function{
		store: store, emitter: emitter, source: "council.dev/execute", now: time.Now,
		log: slog.New(slog.DiscardHandler), resendAfter: 10 * time.Minute,
	}
	for _, o := range opts {
		if err := o(f); err != nil {
			return nil, fmt.Errorf("execute: new: %w", err)
		}
	}
	if f.jobs != nil {
		f.job = f.job.withDefaults()
	}
	if f.pool != nil && f.jobs == nil {
		return nil, errors.New("execute: new: a ray pool needs a job runner (WithJobRunner) to run its jobs")
	}
	var err error
	if f.outbox, err = NewOutbox(store, emitter, f.source, f.now, f.log); err != nil {
		return nil, err
	}
	f.outbox.legacy = f.legacy
	f.started = f.now()
	return f, nil
}

// Handle processes one event. It replies deliberation.accepted to a request
// and nothing to the other events. Errors wrap council.ErrInvalid for events
// that can never be processed and council.ErrUnavailable when the store or
// the broker failed (the event is then delivered again).
func (f *Function) Handle(ctx context.Context, e event.Event) (*event.Event, error) {
	switch e.Type() {
	case events.TypeDeliberationRequested:
		return f.request(ctx, e)
	case events.TypeProposalGenerated:
		id, key, p, err := events.DecodeProposalGenerated(e)
		if err != nil {
			return nil, err
		}
		return nil, f.apply(ctx, id, func(d *council.Deliberation) (bool, error) {
			return d.RecordProposal(key, p, f.now())
		})
	case events.TypeCritiqueCompleted:
		id, key, c, err := events.DecodeCritiqueCompleted(e)
		if err != nil {
			return nil, err
		}
		return nil, f.apply(ctx, id, func(d *council.Deliberation) (bool, error) {
			return d.RecordCritique(key, c, f.now())
		})
	case events.TypeProposalFailed, events.TypeCritiqueFailed:
		w, err := events.DecodeWorkFailure(e)
		if err != nil {
			return nil, err
		}
		return nil, f.apply(ctx, w.DeliberationID, func(d *council.Deliberation) (bool, error) {
			return d.RecordFailure(w.Key, w.Attempt, w.Error, w.Retryable, f.now())
		})
	case events.TypeDeliberationCancel:
		id, reason, err := events.DecodeCancel(e)
		if err != nil {
			return nil, err
		}
		return nil, f.cancel(ctx, id, reason)
	case events.TypeReviewDecided:
		id, r, err := events.DecodeReviewDecided(e)
		if err != nil {
			return nil, err
		}
		return nil, f.apply(ctx, id, func(d *council.Deliberation) (bool, error) {
			return d.Decide(r, f.now())
		})
	case events.TypeSweepTick, events.TypePing:
		if _, err := events.DecodeTick(e); err != nil {
			return nil, err
		}
		if e.Type() == events.TypeSweepTick && e.Subject() != "" {
			// A deliberation's timer: check that one only.
			return nil, f.sweepOne(ctx, e.Subject())
		}
		return nil, f.Sweep(ctx)
	default:
		return nil, council.Invalidf("execute does not handle events of type %q", e.Type())
	}
}

func (f *Function) request(ctx context.Context, e event.Event) (*event.Event, error) {
	task, err := events.DecodeRequest(e)
	if err != nil {
		return nil, err
	}
	if task.Backend == council.BackendRay && f.jobs == nil {
		return nil, council.Invalidf("backend ray is not configured on this execute function")
	}
	if f.models != nil {
		if err := task.CheckModels(f.models); err != nil {
			return nil, fmt.Errorf("execute: %w", err)
		}
	}
	id := council.DeliberationID(e.Source(), e.ID())
	d, err := council.New(id, task, f.now())
	if err != nil {
		return nil, err
	}
	// The completed event carries the result, with room for the envelope
	// and the task's echo.
	if limit := f.maxEvent - 64<<10 - int64(len(task.Description)); f.maxEvent > 0 && int64(d.Task.ResultSize()) > limit {
		return nil, council.Invalidf("agents × (rounds + 1) × max_tokens could produce about %d KiB, more than the broker's "+
			"max_payload of %d KiB allows deliberation.completed to carry: lower max_tokens, rounds or the number of agents",
			d.Task.ResultSize()>>10, f.maxEvent>>10)
	}
	rev, err := f.store.Create(ctx, d)
	if errors.Is(err, council.ErrConflict) {
		// A retried request: the deliberation exists; make sure nothing it
		// owes is left unsent.
		d, rev, err = f.store.Get(ctx, id)
	}
	if err != nil {
		return nil, fmt.Errorf("execute: store deliberation %s: %w", id, err)
	}
	if err := f.outbox.Flush(ctx, d, rev); err != nil {
		return nil, err
	}
	if f.timer != nil && !d.Status.Terminal() {
		// Set again on a retried request: the same id, a duplicate.
		if err := f.timer.At(ctx, d.Deadline, f.tickOf(id, "deadline")); err != nil {
			return nil, fmt.Errorf("execute: deadline timer of %s: %w", id, err)
		}
	}
	if task.Backend == council.BackendRay {
		// Submit the job (once: the submission id is deterministic, so a
		// retried request finds the job it started).
		if d, err = f.ensureJob(ctx, d); err != nil {
			return nil, err
		}
	}
	f.log.Info("deliberation accepted", "deliberation", id, "task_id", task.ID, "kind", task.Kind, "agents", len(task.Agents))
	reply := events.ToEvent(events.NewAccepted(f.source, d, f.now()))
	return &reply, nil
}

// apply runs change on the current state of deliberation id through the
// outbox (compare-and-set, then send).
func (f *Function) apply(ctx context.Context, id string, change func(*council.Deliberation) (bool, error)) error {
	_, err := f.outbox.Apply(ctx, id, change)
	return err
}

// sweepOne checks deliberation id as Sweep does: its deadline, requests
// unanswered too long, its outbox. A deliberation gone (ended and expired)
// is nothing to do.
func (f *Function) sweepOne(ctx context.Context, id string) error {
	if err := council.CheckDeliberationID(id); err != nil {
		return fmt.Errorf("execute: sweep.tick subject: %w", err)
	}
	d, _, err := f.store.Get(ctx, id)
	if errors.Is(err, council.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("execute: sweep %s: %w", id, err)
	}
	if d.Task.Backend == council.BackendRay && f.jobs != nil {
		if d.Status.Terminal() {
			return f.settleJob(ctx, d)
		}
		return f.sweepJob(ctx, d)
	}
	return f.apply(ctx, id, func(d *council.Deliberation) (bool, error) {
		now := f.now()
		ticked := d.Tick(now)
		resent := d.Resend(now, f.resendAfter)
		return ticked || resent, nil
	})
}

// tickOf is the sweep.tick a timer sends for deliberation id: the sweep
// then checks that one only. why tells ticks of one deliberation apart.
func (f *Function) tickOf(id, why string) council.Envelope {
	tick := events.NewTick(f.source, id+"."+why, f.now())
	tick.Subject = id
	return tick
}

// Sweep checks every deliberation that owes something (the store's
// index, not everything kept): deadlines (timeout_seconds), requests
// unanswered for too long (sent again), outboxes left by a crash, and the
// Ray jobs of backend ray (see sweepJob). A stored value that does not
// decode is set aside by the store and stops nothing.
func (f *Function) Sweep(ctx context.Context) error {
	all, err := f.store.Active(ctx)
	if err != nil {
		return fmt.Errorf("execute: sweep: %w", err)
	}
	var errs []error
	if err := f.EnsurePool(ctx); err != nil {
		errs = append(errs, err)
	}
	for _, d := range all {
		if d.Task.Backend == council.BackendRay && f.jobs != nil {
			var err error
			if d.Status.Terminal() {
				err = f.settleJob(ctx, d)
			} else {
				err = f.sweepJob(ctx, d)
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
		if d.Status.Terminal() && len(d.Outbox) == 0 {
			continue
		}
		if d.Task.Backend == council.BackendRay && f.jobs != nil && !d.Status.Terminal() {
			continue
		}
		err := f.apply(ctx, d.ID, func(d *council.Deliberation) (bool, error) {
			now := f.now()
			ticked := d.Tick(now)
			resent := d.Resend(now, f.resendAfter)
			return ticked || resent, nil
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
