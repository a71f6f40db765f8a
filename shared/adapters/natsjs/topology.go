package natsjs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/shared/adapters/natserr"
	"council.dev/shared/council"
)

// Default names and limits of the council topology (docs/CONVENTIONS.md).
const (
	DefaultEventsStream        = "COUNCIL_EVENTS"
	DefaultEventsSubjectPrefix = "council.events"
	DefaultEventsMaxAge        = 7 * 24 * time.Hour
	DefaultDuplicateWindow     = 10 * time.Minute
	DefaultTokensStream        = "COUNCIL_TOKENS"
	DefaultTokensSubjectPrefix = "council.stream"
	DefaultTokensMaxAge        = time.Hour
	DefaultTokensMaxBytes      = 64 << 20
	DefaultBucket              = "council-deliberations"
	// DefaultIndexBucket holds the index of active deliberations and the
	// quarantine: small, so that listing them costs what they hold.
	DefaultIndexBucket = "council-index"
	// DefaultBodiesBucket is the object store of event data too large for
	// the broker (the claim check: events carry a dataref instead).
	DefaultBodiesBucket = "council-bodies"
	// DefaultClaimsBucket holds the work claims of generate and critique
	// (Claims): who does a work item, and its reply once done.
	DefaultClaimsBucket = "council-claims"
	// ClaimsMaxAge bounds every work claim (each has its own, shorter TTL):
	// the longest deliberation and an hour.
	ClaimsMaxAge = council.MaxTimeout + time.Hour
	// DefaultBucketTTL is how long a deliberation's state is kept after its
	// last change: a bound on the bucket (the old service never evicted).
	DefaultBucketTTL = 7 * 24 * time.Hour
	// MarkerTTL is how long the bucket keeps the marker of a removed key.
	MarkerTTL = time.Minute
	// DefaultDLQStream is the dead-letter stream: every event a Consumer
	// terminates (not a CloudEvent, a permanent error, a panic, its
	// deliveries exhausted), with the reason.
	DefaultDLQStream        = "COUNCIL_DLQ"
	DefaultDLQSubjectPrefix = "council.dlq"
	// DefaultDLQMaxAge is how long a dead letter is kept for inspection and
	// replay (council dlq).
	DefaultDLQMaxAge = 30 * 24 * time.Hour
)

// Topology names the streams, subjects and bucket council uses. Zero fields
// take the defaults of DefaultTopology.
type Topology struct {
	// EventsStream is the broker stream (file storage, limits retention).
	EventsStream string
	// EventsSubjectPrefix is the broker prefix: an event of type T goes to
	// <EventsSubjectPrefix>.T, and the stream captures <prefix>.>.
	EventsSubjectPrefix string
	// EventsMaxAge is how long the broker stream keeps an event.
	EventsMaxAge time.Duration
	// DuplicateWindow is how long the broker stream remembers a
	// Nats-Msg-Id to drop a re-sent event.
	DuplicateWindow time.Duration

	// TokensStream captures the streamed tokens (memory storage).
	TokensStream string
	// TokensSubjectPrefix is the token prefix: tokens of an agent go to
	// <TokensSubjectPrefix>.<deliberation>.<agent>.
	TokensSubjectPrefix string
	// TokensMaxAge is how long the token stream keeps a token.
	TokensMaxAge time.Duration
	// TokensMaxBytes bounds the token stream; the oldest tokens go first.
	TokensMaxBytes int64

	// Bucket is the KV bucket of deliberation state (history 1, file).
	Bucket string
	// BucketTTL is how long a deliberation's state is kept after its last
	// change; negative keeps it forever.
	BucketTTL time.Duration
	// IndexBucket is the KV bucket of the index of active deliberations and
	// of the quarantine (history 1, file, the same TTL).
	IndexBucket string
	// BodiesBucket is the object store of event data larger than the
	// broker takes (kept as long as the events: EventsMaxAge).
	BodiesBucket string
	// ClaimsBucket is the KV bucket of work claims (Claims; per-key TTLs,
	// memory storage is not used: a claim must survive a NATS restart).
	ClaimsBucket string

	// DLQStream is the dead-letter stream (file storage, limits
	// retention): a terminated event of consumer C goes to
	// <DLQSubjectPrefix>.C with its reason (DeadLetter).
	DLQStream string
	// DLQSubjectPrefix is the dead-letter prefix; the stream captures
	// <prefix>.>.
	DLQSubjectPrefix string
	// DLQMaxAge is how long the dead-letter stream keeps a dead letter.
	DLQMaxAge time.Duration

	// Replicas is the replica count of the streams and the bucket.
	Replicas int
}

// DefaultTopology returns the topology of docs/CONVENTIONS.md.
func DefaultTopology() Topology {
	return Topology{
		EventsStream:        DefaultEventsStream,
		EventsSubjectPrefix: DefaultEventsSubjectPrefix,
		EventsMaxAge:        DefaultEventsMaxAge,
		DuplicateWindow:     DefaultDuplicateWindow,
		TokensStream:        DefaultTokensStream,
		TokensSubjectPrefix: DefaultTokensSubjectPrefix,
		TokensMaxAge:        DefaultTokensMaxAge,
		TokensMaxBytes:      DefaultTokensMaxBytes,
		Bucket:              DefaultBucket,
		BucketTTL:           DefaultBucketTTL,
		IndexBucket:         DefaultIndexBucket,
		BodiesBucket:        DefaultBodiesBucket,
		ClaimsBucket:        DefaultClaimsBucket,
		DLQStream:           DefaultDLQStream,
		DLQSubjectPrefix:    DefaultDLQSubjectPrefix,
		DLQMaxAge:           DefaultDLQMaxAge,
		Replicas:            1,
	}
}

func (t Topology) withDefaults() Topology {
	d := DefaultTopology()
	if t.EventsStream == "" {
		t.EventsStream = d.EventsStream
	}
	if t.EventsSubjectPrefix == "" {
		t.EventsSubjectPrefix = d.EventsSubjectPrefix
	}
	if t.EventsMaxAge == 0 {
		t.EventsMaxAge = d.EventsMaxAge
	}
	if t.DuplicateWindow == 0 {
		t.DuplicateWindow = d.DuplicateWindow
	}
	if t.TokensStream == "" {
		t.TokensStream = d.TokensStream
	}
	if t.TokensSubjectPrefix == "" {
		t.TokensSubjectPrefix = d.TokensSubjectPrefix
	}
	if t.TokensMaxAge == 0 {
		t.TokensMaxAge = d.TokensMaxAge
	}
	if t.TokensMaxBytes == 0 {
		t.TokensMaxBytes = d.TokensMaxBytes
	}
	if t.Bucket == "" {
		t.Bucket = d.Bucket
	}
	if t.BucketTTL == 0 {
		t.BucketTTL = d.BucketTTL
	}
	if t.IndexBucket == "" {
		t.IndexBucket = d.IndexBucket
	}
	if t.BodiesBucket == "" {
		t.BodiesBucket = d.BodiesBucket
	}
	if t.ClaimsBucket == "" {
		t.ClaimsBucket = d.ClaimsBucket
	}
	if t.DLQStream == "" {
		t.DLQStream = d.DLQStream
	}
	if t.DLQSubjectPrefix == "" {
		t.DLQSubjectPrefix = d.DLQSubjectPrefix
	}
	if t.DLQMaxAge == 0 {
		t.DLQMaxAge = d.DLQMaxAge
	}
	if t.Replicas == 0 {
		t.Replicas = d.Replicas
	}
	return t
}

func (t Topology) validate() error {
	var errs []error
	for _, s := range []string{t.EventsSubjectPrefix, t.TokensSubjectPrefix, t.DLQSubjectPrefix} {
		if !validSubject(s) {
			errs = append(errs, fmt.Errorf("subject prefix %q is not a literal subject", s))
		}
	}
	if t.EventsSubjectPrefix == t.TokensSubjectPrefix {
		errs = append(errs, fmt.Errorf("events and tokens share subject prefix %q", t.EventsSubjectPrefix))
	}
	if t.DLQSubjectPrefix == t.EventsSubjectPrefix || t.DLQSubjectPrefix == t.TokensSubjectPrefix {
		errs = append(errs, fmt.Errorf("the dead-letter prefix %q must differ from the events' and the tokens'", t.DLQSubjectPrefix))
	}
	if t.ClaimsBucket == t.Bucket || t.ClaimsBucket == t.IndexBucket {
		errs = append(errs, fmt.Errorf("the claims bucket %q must differ from the state and index buckets", t.ClaimsBucket))
	}
	if t.IndexBucket == t.Bucket {
		errs = append(errs, fmt.Errorf("the index bucket %q must not be the state bucket", t.IndexBucket))
	}
	for _, n := range []string{t.EventsStream, t.TokensStream, t.Bucket, t.IndexBucket, t.BodiesBucket, t.ClaimsBucket, t.DLQStream} {
		if !validID(n) {
			errs = append(errs, fmt.Errorf("name %q: want letters, digits, '-' and '_'", n))
		}
	}
	if t.EventsMaxAge < 0 || t.TokensMaxAge < 0 || t.TokensMaxBytes < 0 || t.DLQMaxAge < 0 {
		errs = append(errs, errors.New("negative limit"))
	}
	if t.DuplicateWindow < 0 || t.DuplicateWindow > t.EventsMaxAge {
		errs = append(errs, fmt.Errorf("duplicate window %s: must be within max age %s", t.DuplicateWindow, t.EventsMaxAge))
	}
	if t.Replicas < 1 {
		errs = append(errs, fmt.Errorf("replicas %d: must be at least 1", t.Replicas))
	}
	return errors.Join(errs...)
}

// EventSubject returns the broker subject of events of type eventType.
func (t Topology) EventSubject(eventType string) string {
	return t.withDefaults().EventsSubjectPrefix + "." + eventType
}

// ScheduleSubject returns the subject that holds the timer named name
// (Publisher.At): in the broker stream, outside every event type's subject.
func (t Topology) ScheduleSubject(name string) string {
	return t.withDefaults().EventsSubjectPrefix + ".schedule." + name
}

// DLQSubject returns the subject of the dead letters of consumer.
func (t Topology) DLQSubject(consumer string) string {
	return t.withDefaults().DLQSubjectPrefix + "." + consumer
}

// TokenSubject returns the subject of the tokens of one agent of one
// deliberation.
func (t Topology) TokenSubject(deliberationID, agentID string) string {
	return t.withDefaults().TokensSubjectPrefix + "." + deliberationID + "." + agentID
}

// Setup creates the broker stream, the token stream, the dead-letter
// stream, the deliberation, index and claims KV buckets and the bodies
// object store of t, or updates them to t when they exist; running it again
// changes nothing. Zero fields of t take the defaults of DefaultTopology.
//
// It returns an error wrapping council.ErrInvalid for a topology NATS rejects
// (a bad name, a change it cannot apply such as a new storage type) and one
// wrapping council.ErrUnavailable when NATS cannot be reached.
func Setup(ctx context.Context, js jetstream.JetStream, t Topology) error {
	t = t.withDefaults()
	if err := t.validate(); err != nil {
		return fmt.Errorf("natsjs: setup: %w: %w", council.ErrInvalid, err)
	}
	events := jetstream.StreamConfig{
		Name:        t.EventsStream,
		Description: "council events (CloudEvents, structured JSON)",
		Subjects:    []string{t.EventsSubjectPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      t.EventsMaxAge,
		Duplicates:  t.DuplicateWindow,
		Replicas:    t.Replicas,
		// Timers (Publisher.At): a message on the schedule subject of a
		// deliberation is emitted by the server at its time.
		AllowMsgSchedules: true,
		AllowRollup:       true,
	}
	if _, err := js.CreateOrUpdateStream(ctx, events); err != nil {
		return fmt.Errorf("natsjs: setup stream %s: %w", t.EventsStream, classify(err))
	}
	tokens := jetstream.StreamConfig{
		Name:        t.TokensStream,
		Description: "council streamed tokens",
		Subjects:    []string{t.TokensSubjectPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.MemoryStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      t.TokensMaxAge,
		MaxBytes:    t.TokensMaxBytes,
		Replicas:    t.Replicas,
	}
	if _, err := js.CreateOrUpdateStream(ctx, tokens); err != nil {
		return fmt.Errorf("natsjs: setup stream %s: %w", t.TokensStream, classify(err))
	}
	dlq := jetstream.StreamConfig{
		Name:        t.DLQStream,
		Description: "council dead letters: events a consumer terminated, with the reason (council dlq)",
		Subjects:    []string{t.DLQSubjectPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		MaxAge:      t.DLQMaxAge,
		Duplicates:  min(t.DuplicateWindow, t.DLQMaxAge),
		Replicas:    t.Replicas,
	}
	if _, err := js.CreateOrUpdateStream(ctx, dlq); err != nil {
		return fmt.Errorf("natsjs: setup stream %s: %w", t.DLQStream, classify(err))
	}
	kv := jetstream.KeyValueConfig{
		Bucket:      t.Bucket,
		Description: "council deliberation state",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    t.Replicas,
		TTL:         max(t.BucketTTL, 0),
		// Markers of removed keys (the index of active deliberations
		// removes one per deliberation) expire, so that listing a prefix
		// costs what is there, not everything ever removed; it also turns
		// on per-key TTLs.
		LimitMarkerTTL: MarkerTTL,
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, kv); err != nil {
		return fmt.Errorf("natsjs: setup bucket %s: %w", t.Bucket, classify(err))
	}
	index := kv
	index.Bucket, index.Description = t.IndexBucket, "council: index of active deliberations, quarantine"
	if _, err := js.CreateOrUpdateKeyValue(ctx, index); err != nil {
		return fmt.Errorf("natsjs: setup bucket %s: %w", t.IndexBucket, classify(err))
	}
	claims := jetstream.KeyValueConfig{
		Bucket:      t.ClaimsBucket,
		Description: "council: work claims of generate and critique (no duplicate LLM work)",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    t.Replicas,
		TTL:         ClaimsMaxAge,
		// Per-key TTLs: a claim's lease, an answer's keep (Claims).
		LimitMarkerTTL: MarkerTTL,
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, claims); err != nil {
		return fmt.Errorf("natsjs: setup bucket %s: %w", t.ClaimsBucket, classify(err))
	}
	bodies := jetstream.ObjectStoreConfig{
		Bucket:      t.BodiesBucket,
		Description: "council: data of events larger than the broker takes (claim check)",
		TTL:         t.EventsMaxAge,
		Storage:     jetstream.FileStorage,
		Replicas:    t.Replicas,
	}
	if _, err := js.CreateOrUpdateObjectStore(ctx, bodies); err != nil {
		return fmt.Errorf("natsjs: setup object store %s: %w", t.BodiesBucket, classify(err))
	}
	return nil
}

// classify wraps err with its council class, by NATS's error codes
// (natserr.Classify: permanent, transient or too large).
func classify(err error) error { return natserr.Classify(err) }

// validID reports whether s is a non-empty run of ASCII letters, digits, '-'
// and '_' of at most 255 bytes: a KV key, a single subject token and a
// stream name alike.
func validID(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// validSubject reports whether s is a literal NATS subject: dot-separated
// non-empty tokens without wildcards or whitespace.
func validSubject(s string) bool {
	if s == "" {
		return false
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" || strings.ContainsAny(tok, "*> \t\r\n") {
			return false
		}
		for _, r := range tok {
			if r < 0x21 || r == 0x7f {
				return false
			}
		}
	}
	return true
}

// isConnErr reports whether err says the connection is gone.
func isConnErr(err error) bool {
	return errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionDraining)
}
