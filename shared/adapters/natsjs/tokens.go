package natsjs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"council.dev/shared/council"
)

// TokenMessage is the JSON body of a streamed token message on
// council.stream.<deliberation>.<agent>.
type TokenMessage struct {
	DeliberationID string `json:"deliberation_id"`
	AgentID        string `json:"agent_id"`
	Stage          int    `json:"stage"`
	Seq            int    `json:"seq"`
	Text           string `json:"text"`
	// Final marks the last message of a completion; Text is empty then.
	Final bool `json:"final"`
}

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

// PublishToken publishes c as a TokenMessage on
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
	body, err := json.Marshal(TokenMessage{
		DeliberationID: c.DeliberationID,
		AgentID:        c.AgentID,
		Stage:          c.Stage,
		Seq:            c.Seq,
		Text:           c.Text,
		Final:          c.Final,
	})
	if err != nil {
		return fmt.Errorf("natsjs: publish token %s/%s: encode: %w", c.DeliberationID, c.AgentID, err)
	}
	if err := p.nc.Publish(p.topo.TokenSubject(c.DeliberationID, c.AgentID), body); err != nil {
		return fmt.Errorf("natsjs: publish token %s/%s: %w: %w", c.DeliberationID, c.AgentID, council.ErrUnavailable, err)
	}
	return nil
}
