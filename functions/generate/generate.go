// Package generate is the generate function of council: it answers each
// proposal.requested event with one proposal (or revision) from the LLM,
// streams its tokens to NATS, and replies proposal.generated or
// proposal.failed.
package generate

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
func Types() []string { return []string{events.TypeProposalRequested} }

// Function handles proposal.requested events.
type Function struct {
	llm    council.Completer
	tokens council.TokenSink
	source string
	now    func() time.Time
	log    *slog.Logger
	// claims keeps duplicated work from calling the LLM again; nil: none.
	claims council.WorkClaims
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
	if err := council.PastDeadline(req.Deadline, f.now()); err != nil {
		// Work that can no longer count: no LLM call, a failure that is
		// not retried.
		f.log.Info("proposal dropped", "deliberation", req.DeliberationID, "key", req.Key, "attempt", req.Attempt, "error", err)
		out := events.ToEvent(events.NewProposalFailed(f.source, req, fmt.Errorf("generate %s: %w", req.Key, err), f.now()))
		return &out, nil
	}
	if f.claims == nil {
		return f.generate(ctx, req)
	}
	key := council.ClaimKey(req.DeliberationID, req.Key, req.Attempt)
	raw, ran, err := council.Claimed(ctx, f.claims, key, council.ClaimKeep(req.Deadline, f.now()), func(err error) {
		f.log.Warn("work claim", "deliberation", req.DeliberationID, "key", req.Key, "error", err)
	}, func(ctx context.Context) ([]byte, error) {
		out, err := f.generate(ctx, req)
		if err != nil {
			return nil, err
		}
		return json.Marshal(out)
	})
	return claimedReply(raw, ran, err, f.log, req.DeliberationID, req.Key, req.Attempt)
}

// generate runs req on the LLM and returns the reply: proposal.generated,
// or proposal.failed for an LLM failure; only a cancelled ctx is an error.
func (f *Function) generate(ctx context.Context, req council.ProposalRequest) (*event.Event, error) {
	onToken, finish := council.TokenStream(ctx, f.tokens, req.DeliberationID, req.Agent.ID, req.Stage, req.Attempt, func(err error) {
		f.log.Warn("token stream", "deliberation", req.DeliberationID, "agent", req.Agent.ID, "error", err)
	})
	var p council.Proposal
	started := f.now()
	err := council.CallBy(ctx, req.Deadline, func(ctx context.Context) (err error) {
		p, err = council.Generate(ctx, f.llm, req, onToken)
		return err
	})
	finish()
	p.StartedAt = started
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

// claimedReply turns what council.Claimed returned into the handler's
// answer: the reply (stored, for a duplicate of answered work), nothing for
// a duplicate of work in flight (its holder replies), or the error.
func claimedReply(raw []byte, ran bool, err error, log *slog.Logger, id, key string, attempt int) (*event.Event, error) {
	if err != nil {
		return nil, err
	}
	if !ran {
		log.Info("duplicate work: no LLM call", "deliberation", id, "key", key, "attempt", attempt, "answered", raw != nil)
	}
	if raw == nil {
		return nil, nil
	}
	var out event.Event
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("generate %s: stored reply: %w: %w", key, council.ErrUnavailable, err)
	}
	return &out, nil
}
