package execute

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"council.dev/events"
	"council.dev/shared/council"
)

// Outbox applies changes to stored deliberations with compare-and-set and
// sends the events the changes imply: the stored state first, then the
// events (with deterministic ids, so a re-send is a duplicate the broker
// drops), then the sent keys are removed from the stored outbox. The execute
// function and the Ray job (council-agent) record through the same Outbox,
// so both backends emit the same deliberation.completed and
// deliberation.failed events. It is safe for concurrent use.
//
// With a legacy publisher, the terminal key also publishes the old fleet's
// agent responses (agent.response.*) before it is removed, so a crash
// publishes them again (duplicates the stream drops) rather than losing them.
type Outbox struct {
	store   council.Store
	emitter council.Emitter
	source  string
	now     func() time.Time
	log     *slog.Logger
	maxCAS  int
	legacy  legacyPublisher

	// mu guards queues: the changes of each deliberation waiting for the
	// call that applies them (group commit).
	mu     sync.Mutex
	queues map[string][]*applyCall

	// last holds, per deliberation, a private copy of what this outbox
	// stored last and its revision: the next change is tried on it and
	// stored with compare-and-set at that revision, without reading the
	// state first; a lost compare-and-set (another writer) falls back to a
	// read.
	lastMu sync.Mutex
	last   map[string]storedState
}

type storedState struct {
	d   *council.Deliberation
	rev uint64
}

// lastSize bounds the deliberations whose last stored state an outbox keeps.
const lastSize = 1024

func (o *Outbox) remember(d *council.Deliberation, rev uint64) {
	c := d.Clone()
	o.lastMu.Lock()
	defer o.lastMu.Unlock()
	if _, ok := o.last[d.ID]; !ok && len(o.last) >= lastSize {
		for k := range o.last { // any one: a miss only costs a read
			delete(o.last, k)
			break
		}
	}
	o.last[d.ID] = storedState{c, rev}
}

// recall takes the last stored state of id out of the outbox (the caller,
// which holds the deliberation's turn, owns it: no copy); the next commit
// remembers a new one.
func (o *Outbox) recall(id string) (*council.Deliberation, uint64, bool) {
	o.lastMu.Lock()
	defer o.lastMu.Unlock()
	s, ok := o.last[id]
	if !ok {
		return nil, 0, false
	}
	delete(o.last, id)
	return s.d, s.rev, true
}

// applyCall is one Apply waiting in its deliberation's queue.
type applyCall struct {
	change func(*council.Deliberation) (bool, error)
	// done is closed when the call is answered (d, err) or, with lead set,
	// when it is its turn to apply the queue.
	done chan struct{}
	lead bool
	d    *council.Deliberation
	err  error
}

// legacyPublisher publishes the old fleet's agent responses of an ended
// deliberation (legacy.Publisher). Publish returns an error wrapping
// council.ErrUnavailable when the messages could not be sent; publishing
// the same deliberation again must be harmless.
type legacyPublisher interface {
	Publish(ctx context.Context, d *council.Deliberation) error
}

// NewOutbox returns an Outbox over store that sends with emitter, as
// source. A nil now means time.Now; a nil log discards.
func NewOutbox(store council.Store, emitter council.Emitter, source string, now func() time.Time, log *slog.Logger) (*Outbox, error) {
	if store == nil || emitter == nil {
		return nil, errors.New("execute: outbox: a Store and an Emitter are required")
	}
	if source == "" {
		return nil, errors.New("execute: outbox: a source is required")
	}
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Outbox{
		store: store, emitter: emitter, source: source, now: now, log: log, maxCAS: 20,
		queues: map[string][]*applyCall{}, last: map[string]storedState{},
	}, nil
}

// Apply runs change on the current state of deliberation id and, when
// change reports a change, stores it with compare-and-set, running change
// again on the new state after a lost compare-and-set. It then flushes the
// outbox and returns the deliberation as stored. change must be idempotent
// and must not block, and an error of change must leave the deliberation
// as it was (the domain's transitions check before they change). Errors:
// change's own error, one wrapping council.ErrNotFound for an unknown id,
// and one wrapping council.ErrUnavailable when the store or the emitter
// failed or too many writers raced.
//
// Concurrent calls for the same deliberation are applied together (group
// commit): one call reads the state, runs every waiting change in turn,
// stores the result once and flushes once, and answers them all; the
// calls that came meanwhile form the next group. Results of a large
// council, arriving together, then cost a few compare-and-sets instead of
// one each plus the ones they lose to each other.
func (o *Outbox) Apply(ctx context.Context, id string, change func(*council.Deliberation) (bool, error)) (*council.Deliberation, error) {
	c := &applyCall{change: change, done: make(chan struct{})}
	o.mu.Lock()
	q, busy := o.queues[id]
	o.queues[id] = append(q, c)
	o.mu.Unlock()
	if busy {
		// Another call applies the queue; it answers this one, or hands
		// it the turn.
		select {
		case <-c.done:
		case <-ctx.Done():
			o.mu.Lock()
			select {
			case <-c.done: // answered, or handed the turn, meanwhile
				o.mu.Unlock()
			default:
				// Leave the queue. The event is delivered again.
				o.queues[id] = slices.DeleteFunc(o.queues[id], func(x *applyCall) bool { return x == c })
				o.mu.Unlock()
				return nil, fmt.Errorf("execute: deliberation %s: %w: %w", id, council.ErrUnavailable, ctx.Err())
			}
		}
		if !c.lead {
			return c.d, c.err
		}
	}
	// This call's turn: apply what waits, until this call is answered; then
	// hand the turn to the next waiting call, if any.
	for {
		o.mu.Lock()
		calls := o.queues[id]
		o.queues[id] = []*applyCall{}
		o.mu.Unlock()
		o.applyGroup(ctx, id, calls)
		if slices.Contains(calls, c) {
			break
		}
	}
	o.mu.Lock()
	if next := o.queues[id]; len(next) > 0 {
		next[0].lead = true
		close(next[0].done)
	} else {
		delete(o.queues, id)
	}
	o.mu.Unlock()
	return c.d, c.err
}

// applyNow is Apply for one change, outside the queue: for a change made
// while the caller holds its deliberation's turn (Flush inside a group).
func (o *Outbox) applyNow(ctx context.Context, id string, change func(*council.Deliberation) (bool, error)) (*council.Deliberation, error) {
	c := &applyCall{change: change, done: make(chan struct{})}
	o.applyGroup(ctx, id, []*applyCall{c})
	return c.d, c.err
}

// applyGroup runs the changes of calls on the current state of id,
// stores it once and flushes once, answering every call (except a caller
// whose turn it is: the group of the caller itself answers it too).
func (o *Outbox) applyGroup(ctx context.Context, id string, calls []*applyCall) {
	answer := func(cs []*applyCall, d *council.Deliberation, err error) {
		for _, c := range cs {
			c.d, c.err = d, err
			if !c.lead {
				select {
				case <-c.done:
				default:
					close(c.done)
				}
			}
		}
	}
	remaining := calls
	d, rev, optimistic := o.recall(id)
	for range o.maxCAS {
		if !optimistic {
			var err error
			d, rev, err = o.store.Get(ctx, id)
			if errors.Is(err, council.ErrNotFound) {
				answer(remaining, nil, fmt.Errorf("execute: deliberation %s: %w", id, err))
				return
			}
			if err != nil {
				answer(remaining, nil, fmt.Errorf("execute: load deliberation %s: %w", id, err))
				return
			}
		}
		if optimistic {
			// On what this outbox stored last: commit only a change that
			// the compare-and-set confirms; anything else (no change, an
			// error, a lost compare-and-set) is decided again on a read.
			changed := false
			for _, c := range remaining {
				ch, err := c.change(d)
				if err != nil {
					changed = false
					break
				}
				changed = changed || ch
			}
			optimistic = false
			if !changed {
				continue
			}
			newRev, err := o.store.Update(ctx, d, rev)
			if err != nil {
				continue
			}
			rev = newRev
		} else {
			changed := false
			applied := remaining[:0:0]
			for _, c := range remaining {
				ch, err := c.change(d)
				if err != nil {
					answer([]*applyCall{c}, nil, err)
					continue
				}
				changed = changed || ch
				applied = append(applied, c)
			}
			remaining = applied
			if !changed {
				answer(remaining, d, o.Flush(ctx, d, rev))
				return
			}
			var err error
			rev, err = o.store.Update(ctx, d, rev)
			if errors.Is(err, council.ErrConflict) {
				continue
			}
			if err != nil {
				answer(remaining, nil, fmt.Errorf("execute: store deliberation %s: %w", id, err))
				return
			}
		}
		o.remember(d, rev)
		if d.Status.Terminal() {
			o.log.Info("deliberation "+string(d.Status), "deliberation", id, "task_id", d.Task.ID,
				"backend", d.Task.Backend, "reason", d.Reason)
		}
		answer(remaining, d, o.Flush(ctx, d, rev))
		return
	}
	answer(remaining, nil, council.Unavailablef("execute: deliberation %s: too many concurrent updates", id))
}

type sent struct {
	key     string
	attempt int
}

// Flush sends what the outbox of d (stored at rev) names and removes the
// sent keys from the stored outbox. It returns an error wrapping
// council.ErrUnavailable when an event could not be sent; the unsent keys
// stay in the stored outbox for the next Flush. Failing to clear the stored
// outbox is not an error: the events are out, and a later Flush sends them
// again as duplicates.
func (o *Outbox) Flush(ctx context.Context, d *council.Deliberation, rev uint64) error {
	if len(d.Outbox) == 0 {
		return nil
	}
	done, tooLarge, err := o.emitAll(ctx, d)
	if len(done) > 0 {
		o.acknowledge(ctx, d, rev, done)
	}
	if len(tooLarge) > 0 {
		return o.refuseTooLarge(ctx, d.ID, tooLarge)
	}
	return err
}

// refuseTooLarge ends, once, what cannot be sent because it is larger than
// the broker takes (council.ErrTooLarge, by outbox key), instead of retrying
// it until the deadline: a result too large fails the deliberation, a
// request too large fails its call (the agent is out); the reason names the
// limit.
func (o *Outbox) refuseTooLarge(ctx context.Context, id string, tooLarge map[string]error) error {
	_, err := o.applyNow(ctx, id, func(d *council.Deliberation) (bool, error) {
		now := o.now()
		changed := false
		for key, cause := range tooLarge {
			if key == council.OutboxCompleted {
				changed = d.Undeliverable("the result cannot be delivered: "+cause.Error(), now) || changed
				continue
			}
			w := d.Work[key]
			if w == nil || w.State != council.WorkPending {
				continue
			}
			c, err := d.RecordFailure(key, w.Attempt, "the request cannot be sent: "+cause.Error(), false, now)
			if err != nil {
				return false, err
			}
			changed = d.Acknowledge(key) || c || changed // nothing left to send for it
		}
		return changed, nil
	})
	return err
}

// emitConcurrency bounds the events of one outbox sent at once: a stage of
// a large council fans out its calls together and waits for the broker's
// acknowledgements together, instead of one round trip after the other.
const emitConcurrency = 32

// emitAll sends what the outbox of d names, at most emitConcurrency at
// once, and returns the keys sent, the keys larger than the broker takes
// (with their error), and an error joining the other failures (the keys not
// sent stay in the outbox). The end of a deliberation (completed or failed)
// is sent after its other keys, with the legacy responses and the tally,
// before it is acknowledged.
func (o *Outbox) emitAll(ctx context.Context, d *council.Deliberation) ([]sent, map[string]error, error) {
	var (
		mu       sync.Mutex
		done     []sent
		tooLarge = map[string]error{}
		errs     []error
		wg       sync.WaitGroup
	)
	failed := func(key string, err error) {
		if errors.Is(err, council.ErrTooLarge) {
			tooLarge[key] = err
			return
		}
		errs = append(errs, err)
	}
	sem := make(chan struct{}, emitConcurrency)
	var ends []string
	for _, key := range d.Outbox {
		if council.IsEndKey(key) {
			ends = append(ends, key)
			continue
		}
		env, attempt, err := o.envelope(d, key)
		if err != nil {
			return nil, nil, err
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			err := o.emitter.Emit(ctx, env)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed(key, fmt.Errorf("execute: emit %s of %s: %w", env.Type, d.ID, err))
				return
			}
			done = append(done, sent{key, attempt})
		})
	}
	wg.Wait()
	for _, key := range ends {
		if err := o.end(ctx, d, key); err != nil {
			failed(key, err)
			continue
		}
		done = append(done, sent{key, 0})
	}
	return done, tooLarge, errors.Join(errs...)
}

// end sends the end of d (key completed or failed), then, before the key
// is acknowledged, the legacy responses and the end's count in the tally: a
// failure keeps the key, and the next Flush does it again (duplicates are
// dropped, an end counted again changes nothing).
func (o *Outbox) end(ctx context.Context, d *council.Deliberation, key string) error {
	env, _, err := o.envelope(d, key)
	if err != nil {
		return err
	}
	if err := o.emitter.Emit(ctx, env); err != nil {
		return fmt.Errorf("execute: emit %s of %s: %w", env.Type, d.ID, err)
	}
	if o.legacy != nil {
		if err := o.legacy.Publish(ctx, d); err != nil {
			return fmt.Errorf("execute: publish the legacy agent responses of %s: %w", d.ID, err)
		}
	}
	if err := o.store.CountEnd(ctx, d); err != nil {
		return fmt.Errorf("execute: count the end of %s: %w", d.ID, err)
	}
	return nil
}

// acknowledge removes the sent keys from the stored outbox of d (stored at
// rev), with compare-and-set. Failing is not an error: the events are out,
// and a later Flush sends them again as duplicates.
func (o *Outbox) acknowledge(ctx context.Context, d *council.Deliberation, rev uint64, done []sent) {
	for range o.maxCAS {
		changed := false
		for _, s := range done {
			if w := d.Work[s.key]; w != nil && w.Attempt != s.attempt {
				continue // asked again since: that attempt is still owed
			}
			changed = d.Acknowledge(s.key) || changed
		}
		if !changed {
			return
		}
		newRev, err := o.store.Update(ctx, d, rev)
		if err == nil {
			o.remember(d, newRev)
		}
		if !errors.Is(err, council.ErrConflict) {
			if err != nil {
				// The events are out; the keys stay in the outbox and are
				// sent again (as duplicates) later. Nothing is lost.
				o.log.Warn("outbox not cleared", "deliberation", d.ID, "error", err)
			}
			return
		}
		id := d.ID
		if d, rev, err = o.store.Get(ctx, id); err != nil {
			o.log.Warn("outbox not cleared", "deliberation", id, "error", err)
			return // the events are out; the keys are sent again later
		}
	}
}

// envelope encodes the event that outbox key of d stands for.
func (o *Outbox) envelope(d *council.Deliberation, key string) (council.Envelope, int, error) {
	now := o.now()
	switch {
	case key == council.OutboxCompleted:
		return events.NewCompleted(o.source, d, now), 0, nil
	case key == council.OutboxFailed:
		return events.NewFailed(o.source, d, now), 0, nil
	case key == council.OutboxCancelled:
		return events.NewCancelled(o.source, d, now), 0, nil
	case strings.HasPrefix(key, "p."), council.IsJudgeKey(key):
		r, err := d.ProposalRequest(key)
		return events.NewProposalRequested(o.source, r, now), r.Attempt, err
	case strings.HasPrefix(key, "c."):
		r, err := d.CritiqueRequest(key)
		return events.NewCritiqueRequested(o.source, r, now), r.Attempt, err
	}
	if round, ok := council.ParseReviewKey(key); ok {
		return events.NewReviewRequested(o.source, d, round, now), 0, nil
	}
	return council.Envelope{}, 0, fmt.Errorf("execute: deliberation %s: unknown outbox key %q", d.ID, key)
}
