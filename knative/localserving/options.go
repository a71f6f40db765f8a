package localserving

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"council.dev/shared/council"
	"knative.dev/serving/pkg/autoscaler/config"
	"knative.dev/serving/pkg/autoscaler/config/autoscalerconfig"
)

// Defaults of the options; each is documented on its option.
const (
	DefaultIdleWindow    = 60 * time.Second
	DefaultQueueSize     = 10000
	DefaultStopGrace     = 10 * time.Second
	DefaultProbeInterval = 50 * time.Millisecond
	DefaultReadyTimeout  = 10 * time.Minute
	DefaultMaxScaleLimit = 10
)

// Option configures a Serving in New.
type Option func(*options) error

type options struct {
	idleWindow    time.Duration
	queueSize     int
	stopGrace     time.Duration
	probeInterval time.Duration
	readyTimeout  time.Duration
	maxScaleLimit int
	autoscaler    *autoscalerconfig.Config
	output        io.Writer
	log           *slog.Logger
}

func defaultOptions() (options, error) {
	as, err := config.NewConfigFromMap(nil)
	if err != nil {
		return options{}, fmt.Errorf("localserving: knative autoscaler defaults: %w", err)
	}
	return options{
		idleWindow:    DefaultIdleWindow,
		queueSize:     DefaultQueueSize,
		stopGrace:     DefaultStopGrace,
		probeInterval: DefaultProbeInterval,
		readyTimeout:  DefaultReadyTimeout,
		maxScaleLimit: DefaultMaxScaleLimit,
		autoscaler:    as,
		output:        io.Discard,
		log:           slog.New(slog.DiscardHandler),
	}, nil
}

// WithIdleWindow sets how long an instance may have no request in flight
// before it is stopped (never below the Service's min-scale). Default 60 s:
// Knative's stable window; Knative then waits up to its scale-to-zero grace
// period (30 s) more before the last instance goes.
func WithIdleWindow(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return council.Invalidf("localserving: idle window %v: must be positive", d)
		}
		o.idleWindow = d
		return nil
	}
}

// WithQueueSize sets how many requests a Service's activator holds while
// no instance has room; one more is answered 503. Default 10000, the queue
// depth of Knative's activator (activator/net/throttler.go).
func WithQueueSize(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return council.Invalidf("localserving: queue size %d: must be at least 1", n)
		}
		o.queueSize = n
		return nil
	}
}

// WithStopGrace sets how long a stopped instance has between SIGTERM and
// SIGKILL. Default 10 s.
func WithStopGrace(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return council.Invalidf("localserving: stop grace %v: must be positive", d)
		}
		o.stopGrace = d
		return nil
	}
}

// WithProbeInterval sets how often a starting instance's readiness probe is
// tried. Default 50 ms, the queue-proxy's aggressive probing
// (queue/readiness/probe.go); a benchmark sets less to measure exec → ready
// finely.
func WithProbeInterval(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return council.Invalidf("localserving: probe interval %v: must be positive", d)
		}
		o.probeInterval = d
		return nil
	}
}

// WithReadyTimeout sets how long an instance may take to become ready
// before it is killed. Default 10 min, Knative's progress deadline.
func WithReadyTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return council.Invalidf("localserving: ready timeout %v: must be positive", d)
		}
		o.readyTimeout = d
		return nil
	}
}

// WithMaxScaleLimit bounds the instances of any one Service, whatever its
// max-scale says (max-scale 0 means no bound in Knative; on one machine
// there is one). Default 10.
func WithMaxScaleLimit(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return council.Invalidf("localserving: max scale limit %d: must be at least 1", n)
		}
		o.maxScaleLimit = n
		return nil
	}
}

// WithAutoscalerConfig reads the data of a config-autoscaler ConfigMap
// (knative-serving namespace), as Knative's autoscaler does, for the
// defaults a Service's annotations leave open (target, utilization,
// min-scale, max-scale). Default: a stock installation's.
func WithAutoscalerConfig(data map[string]string) Option {
	return func(o *options) error {
		as, err := config.NewConfigFromMap(data)
		if err != nil {
			return fmt.Errorf("localserving: config-autoscaler: %w: %w", council.ErrInvalid, err)
		}
		o.autoscaler = as
		return nil
	}
}

// WithOutput sets where the instances' stdout and stderr go, each line
// prefixed with the instance's name. Default: discarded.
func WithOutput(w io.Writer) Option {
	return func(o *options) error {
		if w == nil {
			return council.Invalidf("localserving: output: nil writer")
		}
		o.output = w
		return nil
	}
}

// WithLogger sets the logger of instance starts, readiness, cold starts and
// stops. Default: discarded.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return council.Invalidf("localserving: logger: nil")
		}
		o.log = l
		return nil
	}
}
