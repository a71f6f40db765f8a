package natsjs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"council.dev/shared/council"
)

// SetupHint is what a bind error tells the operator to do.
const SetupHint = "run `council setup` (or the council-setup Job)"

// Binding is what Check found of one JetStream object of the topology.
type Binding struct {
	// Object names it: "stream COUNCIL_EVENTS", "bucket council-index",
	// "object store council-bodies".
	Object string
	// Missing says the object does not exist.
	Missing bool
	// Incompatible, when not empty, says why the object that exists cannot
	// serve council as it is (a subject it does not capture, a feature
	// turned off).
	Incompatible string
}

// OK reports whether the object exists and can serve council.
func (b Binding) OK() bool { return !b.Missing && b.Incompatible == "" }

// wanted is one object of the topology and what Check requires of it.
type wanted struct {
	object   string
	stream   string
	subjects []string
	// schedules: the stream must allow message schedules (timers).
	schedules bool
	// kv: a KV bucket (at least one message per subject) with per-key TTLs.
	kv bool
}

// objects lists the JetStream objects Setup makes of t (t has its
// defaults), in Setup's order.
func (t Topology) objects() []wanted {
	kv := func(bucket string) wanted {
		return wanted{object: "bucket " + bucket, stream: "KV_" + bucket, subjects: []string{"$KV." + bucket + ".>"}, kv: true}
	}
	return []wanted{
		{object: "stream " + t.EventsStream, stream: t.EventsStream, subjects: []string{t.EventsSubjectPrefix + ".>"}, schedules: true},
		{object: "stream " + t.TokensStream, stream: t.TokensStream, subjects: []string{t.TokensSubjectPrefix + ".>"}},
		{object: "stream " + t.DLQStream, stream: t.DLQStream, subjects: []string{t.DLQSubjectPrefix + ".>"}},
		kv(t.Bucket),
		kv(t.IndexBucket),
		kv(t.ClaimsBucket),
		{object: "object store " + t.BodiesBucket, stream: "OBJ_" + t.BodiesBucket},
	}
}

// Check looks up every object Setup makes of t, all at once (one round
// trip's time), and says of each whether it is there and can serve
// council. It changes nothing. It returns an error wrapping
// council.ErrInvalid for an invalid topology and one wrapping
// council.ErrUnavailable when NATS cannot be reached.
func Check(ctx context.Context, js jetstream.JetStream, t Topology) ([]Binding, error) {
	t = t.withDefaults()
	if err := t.validate(); err != nil {
		return nil, fmt.Errorf("natsjs: check: %w: %w", council.ErrInvalid, err)
	}
	objs := t.objects()
	found := make([]Binding, len(objs))
	errs := make([]error, len(objs))
	var wg sync.WaitGroup
	for i, w := range objs {
		wg.Go(func() { found[i], errs[i] = checkOne(ctx, js, w) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("natsjs: check: %w", err)
	}
	return found, nil
}

// checkOne looks up the stream of w.
func checkOne(ctx context.Context, js jetstream.JetStream, w wanted) (Binding, error) {
	b := Binding{Object: w.object}
	s, err := js.Stream(ctx, w.stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		b.Missing = true
		return b, nil
	case err != nil:
		return b, fmt.Errorf("%s: %w", w.object, classify(err))
	}
	cfg := s.CachedInfo().Config
	var why []string
	for _, sub := range w.subjects {
		if !slices.Contains(cfg.Subjects, sub) {
			why = append(why, fmt.Sprintf("does not capture %s (subjects %v)", sub, cfg.Subjects))
		}
	}
	if w.schedules && !cfg.AllowMsgSchedules {
		why = append(why, "does not allow message schedules (the deadlines' timers)")
	}
	if w.kv && cfg.MaxMsgsPerSubject < 1 {
		why = append(why, "is not a KV bucket")
	}
	if w.kv && !cfg.AllowMsgTTL {
		why = append(why, "has no per-key TTLs")
	}
	b.Incompatible = strings.Join(why, "; ")
	return b, nil
}

// Bind checks that the topology t exists as Setup makes it, changing
// nothing (Check): what a function does at start when its topology is set
// up once for all (COUNCIL_NATS_SETUP=bind). A missing or incompatible
// object is an error wrapping council.ErrInvalid, naming every such object
// and `council setup`: starting again does not create it. It returns an
// error wrapping council.ErrUnavailable when NATS cannot be reached.
func Bind(ctx context.Context, js jetstream.JetStream, t Topology) error {
	found, err := Check(ctx, js, t)
	if err != nil {
		return fmt.Errorf("natsjs: bind: %w", err)
	}
	return bindError(found)
}

// bindError is the error of the objects of found that are not OK, or nil.
func bindError(found []Binding) error {
	var bad []string
	for _, b := range found {
		switch {
		case b.Missing:
			bad = append(bad, b.Object+" missing")
		case b.Incompatible != "":
			bad = append(bad, b.Object+" incompatible: "+b.Incompatible)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("natsjs: bind: %w", council.Invalidf("%s: %s", strings.Join(bad, "; "), SetupHint))
}

// BindStream checks that stream exists (what Bind does for a stream made
// by another Setup: the pool's, the legacy subjects'); what is an
// operator's name for it in the error.
func BindStream(ctx context.Context, js jetstream.JetStream, stream, what string) error {
	if _, err := js.Stream(ctx, stream); err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("natsjs: bind: %w", council.Invalidf("stream %s (%s) missing: %s", stream, what, SetupHint))
		}
		return fmt.Errorf("natsjs: bind stream %s: %w", stream, classify(err))
	}
	return nil
}

// BindPool checks that the work queue of the pool and its consumer exist
// (SetupPool makes them), changing nothing.
func BindPool(ctx context.Context, js jetstream.JetStream, c PoolConfig) error {
	c = c.withDefaults()
	_, err := js.Consumer(ctx, c.Stream, c.Consumer)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("natsjs: bind: %w", council.Invalidf("stream %s (the Ray pool's work queue) missing: %s", c.Stream, SetupHint))
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		return fmt.Errorf("natsjs: bind: %w", council.Invalidf("consumer %s of stream %s (the Ray pool's workers) missing: %s", c.Consumer, c.Stream, SetupHint))
	case err != nil:
		return fmt.Errorf("natsjs: bind pool %s: %w", c.Stream, classify(err))
	}
	return nil
}
