package generate

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/adapters/telemetry"
	"council.dev/shared/council"
	"council.dev/shared/host"
)

// Deps are what the generate function is built over besides its
// configuration.
type Deps struct {
	// NC is the NATS connection the token streams are published on.
	NC *nats.Conn
	// Logger logs; nil discards.
	Logger *slog.Logger
	// Completer replaces the LLM client cfg describes (tests of the
	// wiring); nil builds that client (host.NewCompleter).
	Completer council.Completer
	// Telemetry traces and counts the LLM calls (host.NewTelemetry); nil:
	// none.
	Telemetry *telemetry.Telemetry
}

// FromConfig builds the generate function the way its command runs it: the
// LLM client from cfg, token streams on d.NC in cfg's topology, the source
// cfg.SourceFor("generate"). The command (cmd/generate) and the local stack
// (cli/stack) both build it here.
func FromConfig(cfg host.Config, d Deps) (*Function, error) {
	if d.NC == nil {
		return nil, errors.New("generate: from config: a NATS connection is required (token streams)")
	}
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	llm, err := host.CompleterOr(d.Completer, cfg, log)
	if err != nil {
		return nil, err
	}
	llm = d.Telemetry.Completer(llm, cfg.LLMModel)
	tokens, err := natsjs.NewTokenPublisher(d.NC, natsjs.WithLogger(log), natsjs.WithTopology(cfg.NATS))
	if err != nil {
		return nil, err
	}
	// Work claims on the same NATS: a duplicated proposal.requested makes
	// no second LLM call.
	js, err := jetstream.New(d.NC)
	if err != nil {
		return nil, fmt.Errorf("generate: from config: %w", err)
	}
	claims, err := natsjs.NewClaims(js, natsjs.WithTopology(cfg.NATS))
	if err != nil {
		return nil, err
	}
	return New(llm, WithClaims(claims), WithTokenSink(tokens), WithSource(cfg.SourceFor("generate")), WithLogger(log))
}
