package rayexecutor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/council"
	"council.dev/shared/host"
)

// Settings are the façade's own variables, read once by LoadSettings.
type Settings struct {
	// Window is the idempotency window (COUNCIL_RAYEXECUTOR_WINDOW).
	Window time.Duration
	// Bucket is the KV bucket of recent submissions (COUNCIL_RAYEXECUTOR_BUCKET).
	Bucket string
	// MaxTokens caps each completion of a submitted deliberation
	// (COUNCIL_RAYEXECUTOR_MAX_TOKENS; 0, the default: council's default).
	MaxTokens int
}

// LoadSettings reads the façade's variables through getenv; unset takes
// the defaults (DefaultWindow, DefaultBucket). Errors wrap council.ErrInvalid.
func LoadSettings(getenv func(string) string) (Settings, error) {
	s := Settings{Window: DefaultWindow, Bucket: DefaultBucket}
	if v := strings.TrimSpace(getenv("COUNCIL_RAYEXECUTOR_WINDOW")); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return Settings{}, council.Invalidf("rayexecutor: COUNCIL_RAYEXECUTOR_WINDOW=%q: want a positive duration such as 10m", v)
		}
		s.Window = d
	}
	if v := strings.TrimSpace(getenv("COUNCIL_RAYEXECUTOR_BUCKET")); v != "" {
		s.Bucket = v
	}
	if v := strings.TrimSpace(getenv("COUNCIL_RAYEXECUTOR_MAX_TOKENS")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > council.MaxTokensLimit {
			return Settings{}, council.Invalidf("rayexecutor: COUNCIL_RAYEXECUTOR_MAX_TOKENS=%q: want 1 to %d", v, council.MaxTokensLimit)
		}
		s.MaxTokens = n
	}
	return s, nil
}

// Deps are what the façade is built over besides its configuration.
type Deps struct {
	// JS is the JetStream of the state bucket, of the submissions bucket
	// and, without a K_SINK, of the broker stream.
	JS jetstream.JetStream
	// Logger logs; nil discards.
	Logger *slog.Logger
	// Completer, when it has a Ping method, is checked by GetStatus; nil
	// builds the LLM client cfg describes (only its Ping is used).
	Completer council.Completer
}

// FromConfig builds the façade the way its command runs it: the state
// store of cfg.NATS, the submissions bucket of set, requests published to
// cfg.Sink over HTTP (Knative) or, without one, to the broker stream (the
// way execute publishes its fan-out), the models of cfg, and GetStatus
// checking NATS and the LLM server. The command and the local stack both
// build it here.
func FromConfig(ctx context.Context, cfg host.Config, set Settings, d Deps) (*Server, error) {
	if d.JS == nil {
		return nil, errors.New("rayexecutor: from config: a JetStream is required")
	}
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, err := natsjs.OpenStore(ctx, d.JS, natsjs.WithTopology(cfg.NATS), natsjs.WithLogger(log))
	if err != nil {
		return nil, fmt.Errorf("rayexecutor: %w", err)
	}
	subs, err := OpenSubmissions(ctx, d.JS, set.Bucket, set.Window, cfg.NATS.Replicas)
	if err != nil {
		return nil, err
	}
	var em council.Emitter
	if cfg.Sink != "" {
		if em, err = host.NewSinkEmitter(cfg.Sink); err != nil {
			return nil, err
		}
	} else if em, err = natsjs.NewPublisher(d.JS, natsjs.WithTopology(cfg.NATS)); err != nil {
		return nil, err
	}
	opts := []Option{WithSource(cfg.SourceFor("rayexecutor")), WithModels(cfg.LLMModel, cfg.LLMModels...), WithLogger(log),
		WithMaxTokens(set.MaxTokens)}
	llm, err := host.CompleterOr(d.Completer, cfg, log)
	if err != nil {
		return nil, err
	}
	if p, ok := llm.(interface{ Ping(context.Context) error }); ok {
		opts = append(opts, WithCheck("llm", p.Ping))
	}
	return New(st, em, subs, opts...)
}
