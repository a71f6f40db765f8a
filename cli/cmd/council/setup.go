package main

import (
	"context"
	"fmt"

	"council.dev/shared/host"
	"council.dev/shared/redact"
)

// setupCmd is `council setup`: council's NATS topology created or updated
// once (host.SetupNATS), from the functions' own configuration
// (COUNCIL_NATS_*, COUNCIL_LEGACY_SUBJECTS, COUNCIL_RAY_POOL), so that the
// functions can start with COUNCIL_NATS_SETUP=bind. Running it again
// changes nothing.
func setupCmd(ctx context.Context, args []string, s streams) error {
	fl := newFlags("setup", "setup [-nats URL]", s)
	natsURL := fl.String("nats", envOr(s.getenv, "COUNCIL_NATS_URL", ""),
		"NATS URL (default $COUNCIL_NATS_URL, else "+host.DefaultNATSURL+")")
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected arguments %q", pos)
	}
	cfg, err := host.LoadConfig(func(k string) string {
		if k == "COUNCIL_NATS_URL" {
			return *natsURL
		}
		return s.getenv(k)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(s.out, "council setup: NATS %s\n", redact.URLs(cfg.NATSURL))
	if err := host.SetupNATS(ctx, cfg, "council-setup", s.out); err != nil {
		return err
	}
	fmt.Fprintln(s.out, "council setup: done; the functions may start with COUNCIL_NATS_SETUP=bind")
	return nil
}
