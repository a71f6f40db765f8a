package natsjs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"council.dev/events"
	"council.dev/shared/council"
)

// Token coalescing defaults (WithCoalescing): a completion's pieces are
// gathered into one message until DefaultCoalesceInterval has passed since
// the first piece waiting, or DefaultCoalesceBytes of text wait.
const (
	DefaultCoalesceInterval = 50 * time.Millisecond
	DefaultCoalesceBytes    = 1 << 10
)

type coalescing struct {
	interval time.Duration
	bytes    int
}

// WithCoalescing sets how a TokenPublisher gathers the pieces of one
// completion into one message: a message leaves when interval has passed
// since its first piece, when it holds bytes of text or more, or with the
// completion's final chunk. An interval of 0 publishes every piece as it
// comes (one message per piece). Negative values are an error.
func WithCoalescing(interval time.Duration, bytes int) Option {
	return func(o *options) error {
		if interval < 0 || bytes < 0 {
			return fmt.Errorf("coalescing interval %s and bytes %d must not be negative", interval, bytes)
		}
		o.coalesce = &coalescing{interval: interval, bytes: bytes}
		return nil
	}
}

// TokenPublisher publishes streamed tokens with core NATS, without waiting
// for an ack; the token stream captures them. It coalesces the pieces of a
// completion (WithCoalescing; by default every 50 ms or 1 KiB): one
// message per piece cost generate more CPU and NATS time than the LLM call
// behind it. It is safe for concurrent use.
type TokenPublisher struct {
	nc       *nats.Conn
	topo     Topology
	log      *slog.Logger
	interval time.Duration
	bytes    int

	// mu orders the messages: every publish happens under it, so a
	// completion's final chunk never overtakes its text.
	mu   sync.Mutex
	open map[tokenKey]*pendingTokens
}

// tokenKey names one completion: one attempt of one agent's stage.
type tokenKey struct {
	deliberation, agent string
	stage, attempt      int
}

// pendingTokens is the text of a completion waiting to leave.
type pendingTokens struct {
	chunk council.TokenChunk // the last piece (ids, stage, attempt, seq)
	text  []byte
	timer *time.Timer
}

var _ council.TokenSink = (*TokenPublisher)(nil)

// NewTokenPublisher returns a TokenPublisher that publishes on nc. Options:
// WithTopology, WithCoalescing, WithLogger (errors of the publishes that a
// timer makes).
func NewTokenPublisher(nc *nats.Conn, opts ...Option) (*TokenPublisher, error) {
	if nc == nil {
		return nil, errors.New("natsjs: new token publisher: nil connection")
	}
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	c := coalescing{interval: DefaultCoalesceInterval, bytes: DefaultCoalesceBytes}
	if o.coalesce != nil {
		c = *o.coalesce
	}
	return &TokenPublisher{
		nc: nc, topo: o.topology, log: o.logger, interval: c.interval, bytes: c.bytes,
		open: map[tokenKey]*pendingTokens{},
	}, nil
}

// PublishToken publishes c as an events.TokenMessage on
// council.stream.<deliberation>.<agent>, coalesced with the pieces of the
// same completion (deliberation, agent, stage, attempt) that wait: the
// message carries their text in order and the Seq of the last. A final
// chunk sends what waits, then itself. It returns an error wrapping
// council.ErrInvalid when an id is not made of letters, digits, '-' and
// '_', and one wrapping council.ErrUnavailable when the connection cannot
// take the message. Delivery is best effort.
func (p *TokenPublisher) PublishToken(ctx context.Context, c council.TokenChunk) error {
	if !validID(c.DeliberationID) || !validID(c.AgentID) {
		return fmt.Errorf("natsjs: publish token: %w", council.Invalidf(
			"deliberation id %q and agent id %q must be letters, digits, '-' and '_'", c.DeliberationID, c.AgentID))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("natsjs: publish token %s/%s: %w: %w", c.DeliberationID, c.AgentID, council.ErrUnavailable, err)
	}
	if p.interval <= 0 {
		return p.publish(c)
	}
	k := tokenKey{deliberation: c.DeliberationID, agent: c.AgentID, stage: c.Stage, attempt: c.Attempt}
	p.mu.Lock()
	defer p.mu.Unlock()
	w := p.open[k]
	if c.Final {
		if w != nil {
			delete(p.open, k)
			w.timer.Stop()
			if err := p.publishPending(w); err != nil {
				return err
			}
		}
		return p.publish(c)
	}
	if w == nil {
		w = &pendingTokens{}
		w.timer = time.AfterFunc(p.interval, func() { p.flushTimed(k, w) })
		p.open[k] = w
	}
	w.chunk = c
	w.text = append(w.text, c.Text...)
	if len(w.text) < p.bytes {
		return nil
	}
	delete(p.open, k)
	w.timer.Stop()
	return p.publishPending(w)
}

// Flush publishes every piece that waits (at shutdown).
func (p *TokenPublisher) Flush() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for k, w := range p.open {
		delete(p.open, k)
		w.timer.Stop()
		errs = append(errs, p.publishPending(w))
	}
	return errors.Join(errs...)
}

// flushTimed publishes w when its interval has passed, unless it left
// already (by size or with the final chunk).
func (p *TokenPublisher) flushTimed(k tokenKey, w *pendingTokens) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.open[k] != w {
		return
	}
	delete(p.open, k)
	if err := p.publishPending(w); err != nil {
		p.log.Warn("token stream", "deliberation", k.deliberation, "agent", k.agent, "error", err)
	}
}

func (p *TokenPublisher) publishPending(w *pendingTokens) error {
	c := w.chunk
	c.Text = string(w.text)
	return p.publish(c)
}

func (p *TokenPublisher) publish(c council.TokenChunk) error {
	body, err := events.EncodeToken(c)
	if err != nil {
		return fmt.Errorf("natsjs: publish token: %w", err)
	}
	if err := p.nc.Publish(p.topo.TokenSubject(c.DeliberationID, c.AgentID), body); err != nil {
		return fmt.Errorf("natsjs: publish token %s/%s: %w: %w", c.DeliberationID, c.AgentID, council.ErrUnavailable, err)
	}
	return nil
}
