package localbroker

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Attempt is one delivery attempt, reported to the observer of WithObserver.
type Attempt struct {
	// Trigger is the Trigger's name.
	Trigger string
	// EventID and EventType identify the event delivered.
	EventID, EventType string
	// N numbers the attempts at the subscriber from 1 (the first delivery);
	// for dead letters, the attempts at the dead-letter sink.
	N int
	// StatusCode is the answer's status; 0 when there was none (timeout,
	// connection refused).
	StatusCode int
	// Err is the transport error when there was no answer.
	Err error
	// DeadLetter marks an attempt at the dead-letter sink.
	DeadLetter bool
	// Duplicate marks the second delivery of WithDuplicateDelivery.
	Duplicate bool
}

// Option changes a Broker's defaults.
type Option func(*options) error

type options struct {
	broker         string
	addr           string
	storage        jetstream.StorageType
	publishTimeout time.Duration
	pingPeriod     time.Duration
	duplicate      bool
	observe        func(Attempt)
	logger         *slog.Logger
}

func defaultOptions() options {
	return options{
		addr:           "127.0.0.1:0",
		storage:        jetstream.FileStorage,
		publishTimeout: 5 * time.Second,
		observe:        func(Attempt) {},
		logger:         slog.New(slog.DiscardHandler),
	}
}

// WithBroker picks the Broker of the manifests by name; the default is the
// only one they hold.
func WithBroker(name string) Option {
	return func(o *options) error {
		if name == "" {
			return errors.New("localbroker: WithBroker: empty name")
		}
		o.broker = name
		return nil
	}
}

// WithAddr sets the ingress listen address; the default, 127.0.0.1:0,
// picks a free loopback port (Broker.URL says which).
func WithAddr(addr string) Option {
	return func(o *options) error {
		o.addr = addr
		return nil
	}
}

// WithMemoryStorage keeps the broker's stream in memory rather than in files
// (the channel's default, File).
func WithMemoryStorage() Option {
	return func(o *options) error {
		o.storage = jetstream.MemoryStorage
		return nil
	}
}

// WithPublishTimeout bounds how long the ingress waits for JetStream to
// acknowledge an event before answering 503 (default 5s).
func WithPublishTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("localbroker: WithPublishTimeout %v: want more than 0", d)
		}
		o.publishTimeout = d
		return nil
	}
}

// WithPingPeriod makes every PingSource tick every d instead of on its
// schedule (for tests and development; the default is the schedule).
func WithPingPeriod(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("localbroker: WithPingPeriod %v: want more than 0", d)
		}
		o.pingPeriod = d
		return nil
	}
}

// WithDuplicateDelivery delivers every event a subscriber accepted a second
// time, as a Trigger retry after a lost 2xx would; a reply to the second
// delivery goes back into the broker too.
func WithDuplicateDelivery() Option {
	return func(o *options) error {
		o.duplicate = true
		return nil
	}
}

// WithObserver calls f after every delivery attempt, from the dispatching
// goroutine: f must be safe for concurrent use and quick.
func WithObserver(f func(Attempt)) Option {
	return func(o *options) error {
		if f == nil {
			return errors.New("localbroker: WithObserver: nil func")
		}
		o.observe = f
		return nil
	}
}

// WithLogger sets the logger (default: none).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("localbroker: WithLogger: nil logger")
		}
		o.logger = l
		return nil
	}
}
