package critique

import (
	"log/slog"

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
	return New(llm, WithSource(cfg.SourceFor("critique")), WithLogger(log))
}
