// Package generate is the generate function of council: it answers each
// proposal.requested event with one proposal (or revision) from the LLM,
// streams its tokens to NATS, and replies proposal.generated or
// proposal.failed.
package generate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"council.dev/events"
	"council.dev/shared/council"
)

// Types returns the event types the function consumes (a new slice each call).
func Types() []string { return []string{events.TypeProposalRequested} }

// Function handles proposal.requested events.
type Function struct {
	llm    council.Completer
	tokens council.TokenSink
	source string
	now    func() time.Time
	log    *slog.Logger
}

// Option configures a Function. New reports an option's error.
type Option func(*Function) error

// WithTokenSink streams proposal tokens to sink (nil: no streaming).
func WithTokenSink(sink council.TokenSink) Option {
	return func(f *Function) error {
		f.tokens = sink
		return nil
	}
}

// WithSource sets the CloudEvents source of replies (default
// council.dev/generate); it must not be empty.
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

// New returns a Function that generates with llm.
func New(llm council.Completer, opts ...Option) (*Function, error) {
	if llm == nil {
		return nil, errors.New("generate: a Completer is required")
	}
	f := &Function{llm: llm, source: "council.dev/generate", now: time.Now, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		if err := o(f); err != nil {
			return nil, fmt.Errorf("generate: new: %w", err)
		}
	}
	return f, nil
}

// Handle answers one proposal.requested event. An invalid event returns an
// error wrapping council.ErrInvalid (never retried). An LLM failure is not an
// error of Handle: it is replied as proposal.failed, with retryable set, and
// execute decides whether to ask again. Only a cancelled context returns a
// transient error, so that the event is delivered again.
func (f *Function) Handle(ctx context.Context, e event.Event) (*event.Event, error) {
	req, err := events.DecodeProposalRequested(e)
	if err != nil {
		return nil, err
	}
	// The ids are checked here, at the edge, before any becomes a token
	// subject or reaches the LLM: a forged id is refused, never retried.
	if err := council.CheckWorkIDs(req.DeliberationID, req.Key, req.Agent.ID); err != nil {
		return nil, fmt.Errorf("generate: %w", err)
	}
	onToken, finish := council.TokenStream(ctx, f.tokens, req.DeliberationID, req.Agent.ID, req.Stage, func(err error) {
		f.log.Warn("token stream", "deliberation", req.DeliberationID, "agent", req.Agent.ID, "error", err)
	})
	p, err := council.Generate(ctx, f.llm, req, onToken)
	finish()
	var reply council.Envelope
	switch {
	case err == nil:
		reply = events.NewProposalGenerated(f.source, req, p, f.now())
	case ctx.Err() != nil:
		return nil, council.Unavailablef("generate %s: %v", req.Key, ctx.Err())
	default:
		f.log.Info("proposal failed", "deliberation", req.DeliberationID, "key", req.Key,
			"attempt", req.Attempt, "retryable", council.Retryable(err), "error", err)
		reply = events.NewProposalFailed(f.source, req, err, f.now())
	}
	out := events.ToEvent(reply)
	return &out, nil
}
