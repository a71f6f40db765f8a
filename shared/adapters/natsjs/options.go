package natsjs

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Consumer defaults.
const (
	// DefaultAckWait is how long the server waits for an ack before it
	// redelivers a message. The consumer reports progress every third of it
	// while a handler runs.
	DefaultAckWait = 5 * time.Minute
	// DefaultMaxDeliver is how many times a message is delivered at most.
	DefaultMaxDeliver = 10
	// DefaultConcurrency is how many messages a consumer handles at once;
	// it is also the consumer's MaxAckPending.
	DefaultConcurrency = 8
	// DefaultBackoffBase is the redelivery delay after the first failed
	// delivery of a transient error; it doubles with every delivery.
	DefaultBackoffBase = time.Second
	// DefaultBackoffMax caps the redelivery delay.
	DefaultBackoffMax = time.Minute
	// DefaultDrainTimeout is how long Run waits for in-flight handlers after
	// its context is cancelled before it cancels their contexts.
	DefaultDrainTimeout = 30 * time.Second
)

// Option configures a Publisher, TokenPublisher, Store or Consumer. Each
// constructor uses the options that concern it and ignores the others; the
// doc comment of each option says where it applies.
type Option func(*options) error

type options struct {
	logger       *slog.Logger
	topology     Topology
	now          func() time.Time
	ackWait      time.Duration
	maxDeliver   int
	concurrency  int
	backoffBase  time.Duration
	backoffMax   time.Duration
	drainTimeout time.Duration
	duplicate    bool
	index        jetstream.KeyValue
	pipeline     jetstream.JetStream
	coalesce     *coalescing // TokenPublisher (WithCoalescing); nil: the defaults
	observer     Observer    // Publisher, Consumer (WithObserver); nil: none
}

func newOptions(opts []Option) (options, error) {
	o := options{
		logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		topology:     DefaultTopology(),
		now:          time.Now,
		ackWait:      DefaultAckWait,
		maxDeliver:   DefaultMaxDeliver,
		concurrency:  DefaultConcurrency,
		backoffBase:  DefaultBackoffBase,
		backoffMax:   DefaultBackoffMax,
		drainTimeout: DefaultDrainTimeout,
	}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&o); err != nil {
			return options{}, fmt.Errorf("natsjs: option: %w", err)
		}
	}
	return o, nil
}

// WithIndex sets the KV bucket of the index of active deliberations and of
// the quarantine (Store). The default is the state bucket itself, where
// listing the index costs what the whole bucket holds; OpenStore opens the
// topology's IndexBucket.
func WithIndex(kv jetstream.KeyValue) Option {
	return func(o *options) error {
		if kv == nil {
			return errors.New("nil index bucket")
		}
		o.index = kv
		return nil
	}
}

// WithLogger sets the logger (all constructors). The default discards.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("nil logger")
		}
		o.logger = l
		return nil
	}
}

// WithTopology sets the stream and subject names (Publisher,
// TokenPublisher, Consumer). Zero fields take the defaults of
// DefaultTopology.
func WithTopology(t Topology) Option {
	return func(o *options) error {
		t = t.withDefaults()
		if err := t.validate(); err != nil {
			return err
		}
		o.topology = t
		return nil
	}
}

// WithClock sets the clock used for event times and durations (Publisher,
// Consumer). The default is time.Now.
func WithClock(now func() time.Time) Option {
	return func(o *options) error {
		if now == nil {
			return errors.New("nil clock")
		}
		o.now = now
		return nil
	}
}

// WithAckWait sets the consumer's AckWait (Consumer). Default DefaultAckWait.
func WithAckWait(d time.Duration) Option {
	return func(o *options) error {
		if d < 100*time.Millisecond {
			return fmt.Errorf("ack wait %s: must be at least 100ms", d)
		}
		o.ackWait = d
		return nil
	}
}

// WithMaxDeliver sets how many times a message is delivered at most
// (Consumer). Default DefaultMaxDeliver.
func WithMaxDeliver(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("max deliver %d: must be at least 1", n)
		}
		o.maxDeliver = n
		return nil
	}
}

// WithConcurrency sets how many messages are handled at once, which is also
// the consumer's MaxAckPending (Consumer). Default DefaultConcurrency.
func WithConcurrency(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("concurrency %d: must be at least 1", n)
		}
		o.concurrency = n
		return nil
	}
}

// WithBackoff sets the redelivery delay after a transient error (Consumer):
// base after the first delivery, doubling with each delivery, capped at max.
// Defaults DefaultBackoffBase and DefaultBackoffMax.
func WithBackoff(base, max time.Duration) Option {
	return func(o *options) error {
		if base <= 0 || max < base {
			return fmt.Errorf("backoff %s..%s: need 0 < base <= max", base, max)
		}
		o.backoffBase, o.backoffMax = base, max
		return nil
	}
}

// WithDrainTimeout sets how long Run waits for in-flight handlers once its
// context is cancelled before it cancels their contexts (Consumer). Default
// DefaultDrainTimeout.
func WithDrainTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("drain timeout %s: must be positive", d)
		}
		o.drainTimeout = d
		return nil
	}
}

// WithDuplicateDelivery makes the consumer hand every message to the handler
// twice and publish both replies (Consumer). It is a test aid for the
// end-to-end idempotency test, which proves that a redelivered event changes
// nothing; never use it in production.
func WithDuplicateDelivery() Option {
	return func(o *options) error {
		o.duplicate = true
		return nil
	}
}
