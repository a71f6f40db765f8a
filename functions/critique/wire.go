package critique

import (
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/shared/adapters/natsjs"

	"council.dev/shared/adapters/telemetry"
	"council.dev/shared/council"
	"council.dev/shared/host"
)

// Deps are what the critique function is built over besides its
// configuration.
type Deps struct {
	// Logger logs; nil discards.
	Logger *slog.Logger
	// Completer replaces the LLM client cfg describes (tests of the
	// wiring); nil builds that client (host.NewCompleter).
	Completer council.Completer
	// Telemetry traces and counts the LLM calls (host.NewTelemetry); nil:
	// none.
	Telemetry *telemetry.Telemetry
	// NC, when set, holds the work claims (natsjs.Claims in cfg's
	// topology): a duplicated critique.requested makes no second LLM call.
	NC *nats.Conn
}

// FromConfig builds the critique function the way its command runs it: the
// LLM client from cfg and the source cfg.SourceFor("critique"). The
// command (cmd/critique) and the local stack (cli/stack) both build it here.
func FromConfig(cfg host.Config, d Deps) (*Function, error) {
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	llm, err := host.CompleterOr(d.Completer, cfg, log)
	if err != nil {
		return nil, err
	}
	llm = d.Telemetry.Completer(llm, cfg.LLMModel)
	opts := []Option{WithSource(cfg.SourceFor("critique")), WithLogger(log)}
	if d.NC != nil {
		js, err := jetstream.New(d.NC)
		if err != nil {
			return nil, fmt.Errorf("critique: from config: %w", err)
		}
		claims, err := natsjs.NewClaims(js, natsjs.WithTopology(cfg.NATS))
		if err != nil {
			return nil, err
		}
		opts = append(opts, WithClaims(claims))
	}
	return New(llm, opts...)
}
