package council

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// TokenStream returns an OnToken callback that publishes each piece of
// text of one completion to sink, and a finish func that publishes the
// final chunk. Publishing is best effort; report receives publish errors
// (it may be nil). Every chunk carries attempt, the work item's attempt.
func TokenStream(ctx context.Context, sink TokenSink, deliberation, agent string, stage, attempt int, report func(error)) (func(string), func()) {
	if sink == nil {
		return nil, func() {}
	}
	var mu sync.Mutex
	seq := 0
	publish := func(text string, final bool) {
		mu.Lock()
		seq++
		c := TokenChunk{DeliberationID: deliberation, AgentID: agent, Stage: stage, Attempt: attempt, Seq: seq, Text: text, Final: final}
		mu.Unlock()
		if err := sink.PublishToken(ctx, c); err != nil && report != nil {
			report(err)
		}
	}
	return func(text string) { publish(text, false) }, func() { publish("", true) }
}

// Engine runs a deliberation in-process: it performs the pending work of a
// Deliberation directly on an LLM, agents in parallel, until it ends. The
// Ray job (council-agent) uses it; the functions path performs the same
// work through events instead.
type Engine struct {
	LLM Completer
	// Tokens, when set, receives streamed proposal tokens.
	Tokens TokenSink
	// Now is the clock (called from the goroutines of the calls too: it
	// must be safe for concurrent use); nil means time.Now.
	Now func() time.Time
	// OnChange, when set, is called after every transition (to persist or
	// report progress); an error stops the run.
	OnChange func(ctx context.Context, d *Deliberation) error
}

type workResult struct {
	key      string
	attempt  int
	proposal *Proposal
	critique *Critique
	err      error
}

// Run drives d until it completes or fails. It returns an error only when
// ctx is cancelled or OnChange fails; a failed deliberation is a normal end
// (d.Status == StatusFailed).
func (e *Engine) Run(ctx context.Context, d *Deliberation) error {
	now := e.clock
	// The deadline is measured on the engine's clock, like every other time
	// of the deliberation.
	ctx, cancel := context.WithTimeout(ctx, d.Deadline.Sub(now()))
	results := make(chan workResult)
	inflight := 0
	defer func() {
		// Let in-flight calls end so no goroutine outlives the run, also
		// when it stops early (ctx cancelled, OnChange failed): each call
		// sends its result on the unbuffered channel before it returns.
		cancel()
		for ; inflight > 0; inflight-- {
			<-results
		}
	}()
	for {
		for _, key := range append([]string(nil), d.Outbox...) {
			if isEnd(key) {
				continue
			}
			d.Acknowledge(key)
			w := d.Work[key]
			if w == nil || w.State != WorkPending {
				continue
			}
			inflight++
			job := e.prepare(ctx, d, *w)
			go func() { results <- job() }()
		}
		if d.Status.Terminal() {
			break
		}
		if inflight == 0 {
			return fmt.Errorf("council: engine: deliberation %s is stuck in stage %d %s with nothing in flight", d.ID, d.Stage, d.Phase)
		}
		var r workResult
		select {
		case r = <-results:
			inflight--
		case <-ctx.Done():
		}
		// A result that races the deadline is not applied: a call cut off by
		// the deadline must not count as an agent failure.
		if err := ctx.Err(); err != nil {
			if errors.Is(err, context.DeadlineExceeded) && d.Tick(now().Add(time.Millisecond)) {
				if err := e.changed(ctx, d); err != nil {
					return err
				}
				break
			}
			return err
		}
		e.apply(d, r, now())
		if err := e.changed(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

func (e *Engine) changed(ctx context.Context, d *Deliberation) error {
	if e.OnChange == nil {
		return nil
	}
	return e.OnChange(context.WithoutCancel(ctx), d)
}

func (e *Engine) apply(d *Deliberation, r workResult, now time.Time) {
	switch {
	case r.err != nil:
		_, _ = d.RecordFailure(r.key, r.attempt, r.err.Error(), Retryable(r.err), now)
	case r.proposal != nil:
		_, _ = d.RecordProposal(r.key, *r.proposal, now)
	case r.critique != nil:
		_, _ = d.RecordCritique(r.key, *r.critique, now)
	}
}

// clock is the engine's clock: Now, or time.Now.
func (e *Engine) clock() time.Time {
	if e.Now == nil {
		return time.Now()
	}
	return e.Now()
}

// prepare reads what work w needs from d (on the caller's goroutine, so
// the returned func never touches d) and returns the call to make.
func (e *Engine) prepare(ctx context.Context, d *Deliberation, w Work) func() workResult {
	r := workResult{key: w.Key, attempt: w.Attempt}
	id := d.ID
	switch w.Kind {
	case WorkProposal:
		req, err := d.ProposalRequest(w.Key)
		return func() workResult {
			if err != nil {
				r.err = err
				return r
			}
			onToken, finish := TokenStream(ctx, e.Tokens, id, w.AgentID, w.Stage, w.Attempt, nil)
			started := e.clock()
			p, err := Generate(ctx, e.LLM, req, onToken)
			finish()
			p.StartedAt = started
			r.proposal, r.err = &p, err
			return r
		}
	default:
		req, err := d.CritiqueRequest(w.Key)
		return func() workResult {
			if err != nil {
				r.err = err
				return r
			}
			started := e.clock()
			c, err := Review(ctx, e.LLM, req)
			c.StartedAt = started
			r.critique, r.err = &c, err
			return r
		}
	}
}
