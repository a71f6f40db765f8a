package natsjs

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"council.dev/events"
	"council.dev/shared/council"
)

// Watch calls fn with every version of deliberation id stored from now on,
// the current one first (when there is one), with its revision, until ctx
// ends (it returns nil then) or fn returns an error (Watch returns it). It
// watches the header of id in the state bucket: each revision is one
// transition, on every transport (the state is in the bucket under Knative
// too). Versions written in quick succession may be seen as the last one
// only: the bucket keeps no history. It returns an error wrapping
// council.ErrInvalid for a bad id and council.ErrUnavailable when the
// bucket cannot be watched or a version read.
func (s *Store) Watch(ctx context.Context, id string, fn func(d *council.Deliberation, revision uint64) error) error {
	if err := checkKey(id); err != nil {
		return fmt.Errorf("natsjs: watch deliberation: %w", err)
	}
	w, err := s.kv.Watch(ctx, id)
	if err != nil {
		return fmt.Errorf("natsjs: watch deliberation %s: %w", id, classify(err))
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("natsjs: watch deliberation %s: %w: the watch ended", id, council.ErrUnavailable)
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue // the end of the initial values, or a deletion
			}
			d, err := s.decode(ctx, id, e.Value())
			if err != nil {
				return fmt.Errorf("natsjs: watch deliberation %s: %w", id, err)
			}
			if err := fn(d, e.Revision()); err != nil {
				return err
			}
		}
	}
}

// TokenFeed reads the token stream of a deliberation back: every message
// its agents' completions published (TokenPublisher), in order, with its
// stream sequence, from any point. It is safe for concurrent use.
type TokenFeed struct {
	js   jetstream.JetStream
	topo Topology
}

// NewTokenFeed returns a TokenFeed over the token stream of js. Options:
// WithTopology.
func NewTokenFeed(js jetstream.JetStream, opts ...Option) (*TokenFeed, error) {
	if js == nil {
		return nil, errors.New("natsjs: new token feed: nil JetStream")
	}
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	return &TokenFeed{js: js, topo: o.topology.withDefaults()}, nil
}

func (t *TokenFeed) filter(id string) (string, error) {
	if !validID(id) {
		return "", council.Invalidf("natsjs: token feed: deliberation id %q must be letters, digits, '-' and '_'", id)
	}
	return t.topo.TokensSubjectPrefix + "." + id + ".>", nil
}

// Last returns the stream sequence of the last token message of
// deliberation id, 0 when there is none.
func (t *TokenFeed) Last(ctx context.Context, id string) (uint64, error) {
	filter, err := t.filter(id)
	if err != nil {
		return 0, err
	}
	s, err := t.js.Stream(ctx, t.topo.TokensStream)
	if err != nil {
		return 0, fmt.Errorf("natsjs: token feed: stream %s: %w", t.topo.TokensStream, classify(err))
	}
	m, err := s.GetLastMsgForSubject(ctx, filter)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("natsjs: token feed: last of %s: %w", id, classify(err))
	}
	return m.Sequence, nil
}

// Follow calls fn with each token message of deliberation id stored after
// stream sequence after (0: from the first), in order, and those stored
// later as they come, until ctx ends (it returns nil then) or fn returns
// an error (Follow returns it). A message that does not decode is skipped.
func (t *TokenFeed) Follow(ctx context.Context, id string, after uint64, fn func(c council.TokenChunk, seq uint64) error) error {
	filter, err := t.filter(id)
	if err != nil {
		return err
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if after > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, after+1
	}
	cons, err := t.js.OrderedConsumer(ctx, t.topo.TokensStream, cfg)
	if err != nil {
		return fmt.Errorf("natsjs: token feed %s: %w", id, classify(err))
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("natsjs: token feed %s: %w", id, classify(err))
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	for {
		m, err := it.Next()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			return fmt.Errorf("natsjs: token feed %s: %w", id, classify(err))
		}
		md, err := m.Metadata()
		if err != nil {
			continue
		}
		c, err := events.DecodeToken(m.Data())
		if err != nil {
			continue
		}
		if err := fn(c, md.Sequence.Stream); err != nil {
			return err
		}
	}
}
