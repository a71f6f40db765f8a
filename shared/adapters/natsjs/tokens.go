package natsjs

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"council.dev/events"
	"council.dev/shared/council"
)

// TokenPublisher publishes streamed tokens with core NATS, without waiting
// for an ack; the token stream captures them. It is safe for concurrent use.
type TokenPublisher struct {
	nc   *nats.Conn
	topo Topology
}

var _ council.TokenSink = (*TokenPublisher)(nil)

// NewTokenPublisher returns a TokenPublisher that publishes on nc. Options:
// WithTopology.
func NewTokenPublisher(nc *nats.Conn, opts ...Option) (*TokenPublisher, error) {
	if nc == nil {
		return nil, errors.New("natsjs: new token publisher: nil connection")
	}
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	return &TokenPublisher{nc: nc, topo: o.topology}, nil
}

// PublishToken publishes c as an events.TokenMessage on
// council.stream.<deliberation>.<agent>. It returns an error wrapping
// council.ErrInvalid when an id is not made of letters, digits, '-' and '_',
// and one wrapping council.ErrUnavailable when the connection cannot take
// the message. Delivery is best effort.
func (p *TokenPublisher) PublishToken(ctx context.Context, c council.TokenChunk) error {
	if !validID(c.DeliberationID) || !validID(c.AgentID) {
		return fmt.Errorf("natsjs: publish token: %w", council.Invalidf(
			"deliberation id %q and agent id %q must be letters, digits, '-' and '_'", c.DeliberationID, c.AgentID))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("natsjs: publish token %s/%s: %w: %w", c.DeliberationID, c.AgentID, council.ErrUnavailable, err)
	}
	body, err := events.EncodeToken(c)
	if err != nil {
		return fmt.Errorf("natsjs: publish token: %w", err)
	}
	if err := p.nc.Publish(p.topo.TokenSubject(c.DeliberationID, c.AgentID), body); err != nil {
		return fmt.Errorf("natsjs: publish token %s/%s: %w: %w", c.DeliberationID, c.AgentID, council.ErrUnavailable, err)
	}
	return nil
}
