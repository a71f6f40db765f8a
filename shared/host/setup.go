package host

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"council.dev/shared/adapters/legacy"
	"council.dev/shared/adapters/natsjs"
)

// setupTimeout bounds SetupNATS: creating the streams of a replicated
// cluster takes a while, but not forever.
const setupTimeout = time.Minute

// PoolConfig is the work queue of the Ray pool cfg describes
// (COUNCIL_RAY_POOL_ACK_WAIT, COUNCIL_NATS_REPLICAS).
func (c Config) PoolConfig() natsjs.PoolConfig {
	return natsjs.PoolConfig{Replicas: c.NATS.Replicas, AckWait: c.RayPoolAckWait}
}

// SetupNATS creates or updates council's whole NATS topology of cfg once —
// the streams, buckets and object store of cfg.NATS (natsjs.Setup), the
// index of active deliberations (built once for a bucket older than it),
// the legacy subjects' stream when cfg.LegacySubjects, the Ray pool's work
// queue and consumer when cfg.RayPool > 0 — and writes to w one line per
// object saying what it did. Running it again changes nothing. It is what
// `council setup` and a function's -setup (the council-setup Job) do, so
// that the functions can start with COUNCIL_NATS_SETUP=bind; name names the
// connection. Its errors are classified as ConnectNATS's.
func SetupNATS(ctx context.Context, cfg Config, name string, w io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	nc, js, err := dialNATS(cfg, name)
	if err != nil {
		return err
	}
	defer nc.Close()
	before, err := natsjs.Check(ctx, js, cfg.NATS)
	if err != nil {
		return closeOnSetupError(nc, cfg, fmt.Errorf("host: setup: %w", err))
	}
	if err := natsjs.Setup(ctx, js, cfg.NATS); err != nil {
		return fmt.Errorf("host: setup: %w", err)
	}
	for _, b := range before {
		switch {
		case b.Missing:
			fmt.Fprintf(w, "%s: created\n", b.Object)
		case b.Incompatible != "":
			fmt.Fprintf(w, "%s: updated (it %s)\n", b.Object, b.Incompatible)
		default:
			fmt.Fprintf(w, "%s: exists, configuration applied\n", b.Object)
		}
	}
	// The functions that bind skip this at start: a state bucket older
	// than the index gets it here, once.
	store, err := natsjs.OpenStore(ctx, js, natsjs.WithTopology(cfg.NATS))
	if err != nil {
		return fmt.Errorf("host: setup: %w", err)
	}
	if err := store.EnsureIndexed(ctx); err != nil {
		return fmt.Errorf("host: setup: %w", err)
	}
	fmt.Fprintln(w, "index of active deliberations: up to date")
	if cfg.LegacySubjects {
		lp, err := legacy.New(js, legacy.WithReplicas(cfg.NATS.Replicas))
		if err != nil {
			return fmt.Errorf("host: setup: %w", err)
		}
		if err := lp.Setup(ctx); err != nil {
			return fmt.Errorf("host: setup: %w", err)
		}
		fmt.Fprintf(w, "stream %s (legacy subjects): created or updated\n", legacy.DefaultStream)
	}
	if cfg.RayPool > 0 {
		pc := cfg.PoolConfig()
		if _, err := natsjs.SetupPool(ctx, js, pc); err != nil {
			return fmt.Errorf("host: setup: %w", err)
		}
		fmt.Fprintf(w, "stream %s and consumer %s (Ray pool): created or updated\n", natsjs.DefaultPoolStream, natsjs.DefaultPoolConsumer)
	}
	return nil
}

// RunSetup is a function command's -setup: SetupNATS, what it did on out,
// and the command's exit status (0, or 1 with the error logged).
func RunSetup(ctx context.Context, cfg Config, name string, out io.Writer, log *slog.Logger) int {
	if err := SetupNATS(ctx, cfg, name+"-setup", out); err != nil {
		log.Error("setup", "function", name, "error", err)
		return 1
	}
	return 0
}
