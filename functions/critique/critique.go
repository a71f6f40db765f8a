// Package critique is the critique function of council: it answers each
// critique.requested event with one structured peer review (scores per
// rubric criterion and overall in [0,1], strengths, issues, suggestions)
// obtained with JSON-schema constrained output, and replies
// critique.completed or critique.failed.
package critique

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"council.dev/events"
	"council.dev/shared/council"
)

// Types returns the event types the function consumes (a new slice each call).
func Types() []string { return []string{events.TypeCritiqueRequested} }

// Function handles critique.requested events.
type Function struct {
	llm    council.Completer
	source string
	now    func() time.Time
	log    *slog.Logger
	// claims keeps duplicated work from calling the LLM again; nil: none.
	claims council.WorkClaims
}

// Option configures a Function. New reports an option's error.
type Option func(*Function) error

// WithSource sets the CloudEvents source of replies (default
// council.dev/critique); it must not be empty.
func WithSource(source string) Option {
	return func(f *Function) error {
		if source == "" {
			return errors.New("empty source")
		}
		f.source = source
		return nil
	}
}

// WithClaims makes duplicated work events (the same deliberation, key and
// attempt) cost no second LLM call: the first handler claims the work in
// claims, a duplicate of work in flight gets no reply (the holder sends
// it) and one of answered work gets the stored reply again. A nil claims
// changes nothing.
func WithClaims(claims council.WorkClaims) Option {
	return func(f *Function) error {
		f.claims = claims
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

// New returns a Function that reviews with llm.
func New(llm council.Completer, opts ...Option) (*Function, error) {
	if llm == nil {
		return nil, errors.New("critique: a Completer is required")
	}
	f := &Function{llm: llm, source: "council.dev/critique", now: time.Now, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		if err := o(f); err != nil {
			return nil, fmt.Errorf("critique: new: %w", err)
		}
	}
	return f, nil
}

// Handle answers one critique.requested event. An invalid event returns an
// error wrapping council.ErrInvalid. Model output that is not valid critique
// JSON, and LLM failures, are replied as critique.failed (retryable when
// another attempt may succeed); a cancelled context returns a transient error.
func (f *Function) Handle(ctx context.Context, e event.Event) (*event.Event, error) {
	req, err := events.DecodeCritiqueRequested(e)
	if err != nil {
		return nil, err
	}
	// The ids are checked here, at the edge, before any becomes a token
	// subject or reaches the LLM: a forged id is refused, never retried.
	if err := council.CheckWorkIDs(req.DeliberationID, req.Key, req.Reviewer.ID); err != nil {
		return nil, fmt.Errorf("critique: %w", err)
	}
	if err := council.PastDeadline(req.Deadline, f.now()); err != nil {
		// Work that can no longer count: no LLM call, a failure that is
		// not retried.
		f.log.Info("critique dropped", "deliberation", req.DeliberationID, "key", req.Key, "attempt", req.Attempt, "error", err)
		out := events.ToEvent(events.NewCritiqueFailed(f.source, req, fmt.Errorf("critique %s: %w", req.Key, err), f.now()))
		return &out, nil
	}
	if f.claims == nil {
		return f.review(ctx, req)
	}
	key := council.ClaimKey(req.DeliberationID, req.Key, req.Attempt)
	raw, ran, err := council.Claimed(ctx, f.claims, key, council.ClaimKeep(req.Deadline, f.now()), func(err error) {
		f.log.Warn("work claim", "deliberation", req.DeliberationID, "key", req.Key, "error", err)
	}, func(ctx context.Context) ([]byte, error) {
		out, err := f.review(ctx, req)
		if err != nil {
			return nil, err
		}
		return json.Marshal(out)
	})
	if err != nil {
		return nil, err
	}
	if !ran {
		f.log.Info("duplicate work: no LLM call", "deliberation", req.DeliberationID, "key", req.Key, "attempt", req.Attempt, "answered", raw != nil)
	}
	if raw == nil {
		return nil, nil
	}
	var out event.Event
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("critique %s: stored reply: %w: %w", req.Key, council.ErrUnavailable, err)
	}
	return &out, nil
}

// review runs req on the LLM and returns the reply: critique.completed,
// or critique.failed for an LLM or output failure; only a cancelled ctx is
// an error.
func (f *Function) review(ctx context.Context, req council.CritiqueRequest) (*event.Event, error) {
	var c council.Critique
	started := f.now()
	err := council.CallBy(ctx, req.Deadline, func(ctx context.Context) (err error) {
		c, err = council.Review(ctx, f.llm, req)
		return err
	})
	c.StartedAt = started
	var reply council.Envelope
	switch {
	case err == nil:
		reply = events.NewCritiqueCompleted(f.source, req, c, f.now())
	case ctx.Err() != nil:
		return nil, council.Unavailablef("critique %s: %v", req.Key, ctx.Err())
	default:
		f.log.Info("critique failed", "deliberation", req.DeliberationID, "key", req.Key,
			"attempt", req.Attempt, "retryable", council.Retryable(err), "error", err)
		reply = events.NewCritiqueFailed(f.source, req, err, f.now())
	}
	out := events.ToEvent(reply)
	return &out, nil
}
