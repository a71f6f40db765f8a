package legacy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	wire "council.dev/events/legacy"
	"council.dev/shared/adapters/natserr"
	"council.dev/shared/council"
)

// Defaults of New and of the stream Setup creates (the fleet's
// AGENT_RESPONSES, ORIGINAL.md §5.1, plus a duplicate window).
const (
	DefaultStream          = "AGENT_RESPONSES"
	DefaultProducer        = "council"
	DefaultMaxAge          = time.Hour
	DefaultMaxMsgs         = 10000
	DefaultDuplicateWindow = 10 * time.Minute
)

// ContentType is the Content-Type header of every message.
const ContentType = "application/json"

// Publisher publishes the old fleet's agent responses of ended
// deliberations. It is safe for concurrent use.
type Publisher struct {
	js       jetstream.JetStream
	stream   string
	producer string
	replicas int
	now      func() time.Time
	log      *slog.Logger
}

// Option configures a Publisher.
type Option func(*options) error

type options struct {
	stream   string
	producer string
	replicas int
	now      func() time.Time
	log      *slog.Logger
}

// WithStream names the stream Setup creates (default AGENT_RESPONSES).
func WithStream(name string) Option {
	return func(o *options) error {
		if !validName(name) {
			return fmt.Errorf("stream %q: want 1-255 letters, digits, '-' and '_'", name)
		}
		o.stream = name
		return nil
	}
}

// WithProducer sets the envelope's producer (default "council").
func WithProducer(name string) Option {
	return func(o *options) error {
		if name == "" {
			return errors.New("empty producer")
		}
		o.producer = name
		return nil
	}
}

// WithReplicas sets the stream's replica count (default 1).
func WithReplicas(n int) Option {
	return func(o *options) error {
		if n < 1 || n > 5 {
			return fmt.Errorf("replicas %d: want 1 to 5", n)
		}
		o.replicas = n
		return nil
	}
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("nil logger")
		}
		o.log = l
		return nil
	}
}

// WithClock sets the clock of the envelope timestamps (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(o *options) error {
		if now == nil {
			return errors.New("nil clock")
		}
		o.now = now
		return nil
	}
}

// New returns a Publisher that publishes through js.
func New(js jetstream.JetStream, opts ...Option) (*Publisher, error) {
	if js == nil {
		return nil, errors.New("legacy: new publisher: nil JetStream")
	}
	o := options{
		stream: DefaultStream, producer: DefaultProducer, replicas: 1,
		now: time.Now, log: slog.New(slog.DiscardHandler),
	}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("legacy: option: %w", err)
		}
	}
	return &Publisher{js: js, stream: o.stream, producer: o.producer, replicas: o.replicas, now: o.now, log: o.log}, nil
}

// Setup creates the stream (subjects agent.response.>, limits retention,
// file storage, 1 h, 10000 messages, a 10 minute duplicate window) or
// updates an existing one, such as the fleet's, to that configuration;
// running it again changes nothing. It returns an error wrapping
// council.ErrInvalid when NATS refuses the configuration (an existing
// stream on memory storage, a subject overlap) and one wrapping
// council.ErrUnavailable when NATS cannot be reached.
func (p *Publisher) Setup(ctx context.Context) error {
	cfg := jetstream.StreamConfig{
		Name:        p.stream,
		Description: "agent responses for the swe-ai-fleet consumers (council compatibility publisher)",
		Subjects:    []string{wire.StreamSubjects},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      DefaultMaxAge,
		MaxMsgs:     DefaultMaxMsgs,
		Duplicates:  DefaultDuplicateWindow,
		Replicas:    p.replicas,
	}
	if _, err := p.js.CreateOrUpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("legacy: setup stream %s: %w", p.stream, natserr.Classify(err))
	}
	return nil
}

// Publish publishes the messages of the ended deliberation d (see
// [wire.Messages]), each with its idempotency key as Nats-Msg-Id, so
// publishing d again within the duplicate window adds nothing to the stream. It
// returns an error wrapping council.ErrInvalid when d has not ended and
// one wrapping council.ErrUnavailable when NATS does not acknowledge a
// message; publishing again then sends the missing ones.
func (p *Publisher) Publish(ctx context.Context, d *council.Deliberation) error {
	msgs, err := wire.Messages(d, p.producer, p.now())
	if err != nil {
		return err
	}
	dups := 0
	for _, m := range msgs {
		msg := &nats.Msg{Subject: m.Subject, Data: m.Body, Header: nats.Header{}}
		msg.Header.Set("Content-Type", ContentType)
		ack, err := p.js.PublishMsg(ctx, msg, jetstream.WithMsgID(m.ID))
		if err != nil {
			return fmt.Errorf("legacy: publish %s of %s: %w", m.Subject, d.ID, natserr.Classify(err))
		}
		if ack.Duplicate {
			dups++
		}
	}
	p.log.InfoContext(ctx, "legacy agent responses published", "deliberation", d.ID, "task_id", d.Task.ID,
		"status", d.Status, "messages", len(msgs), "duplicates", dups)
	return nil
}

// validName reports whether s can name a stream.
func validName(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}
