package natsjs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"council.dev/events"
	"council.dev/shared/adapters/natserr"
	"council.dev/shared/council"
)

// Store keeps deliberations in a JetStream KV bucket (ADR 8): per
// deliberation a small header under its id, updated with compare-and-set
// (the KV revision), and immutable records — the task, every proposal and
// critique — each written once under "<id>.<record key>"
// (events.StateCodec). An index key "active.<id>" exists while the
// deliberation owes something (council.Deliberation.Owes), so the sweep reads the active deliberations, not everything kept.
// A value that does not decode is set aside under "quarantine.<id>" with the
// reason, and listing goes on without it. It is safe for concurrent use.
type Store struct {
	kv    jetstream.KeyValue
	idx   jetstream.KeyValue // the index and the quarantine (kv by default)
	codec *events.StateCodec
	log   *slog.Logger
	now   func() time.Time
	// pipe, when set, sends a transition's records and header together
	// (WithPipeline).
	pipe *pipeline
}

var _ council.Store = (*Store)(nil)

// Key prefixes of the index and the quarantine. Deliberation ids have no
// dots, so "active.<id>" and "quarantine.<id>" (two tokens) never clash with
// a header (one token) or a record (three tokens or more, the second being
// "task", "p" or "c").
const (
	activePrefix     = "active."
	quarantinePrefix = "quarantine."
	// orphanAge is how old an index key without a header must be before
	// the sweep removes it (younger ones may belong to a Create under way).
	orphanAge = time.Minute
)

// NewStore returns a Store over kv (the bucket Setup creates; open it with
// js.KeyValue(ctx, natsjs.DefaultBucket)). WithLogger sets where set-aside
// values are reported.
func NewStore(kv jetstream.KeyValue, opts ...Option) (*Store, error) {
	if kv == nil {
		return nil, errors.New("natsjs: new store: nil KeyValue")
	}
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	idx := o.index
	if idx == nil {
		idx = kv
	}
	s := &Store{kv: kv, idx: idx, codec: events.NewStateCodec(0), log: o.logger, now: o.now}
	if o.pipeline != nil {
		s.pipe = &pipeline{js: o.pipeline, prefix: "$KV." + kv.Bucket() + "."}
	}
	return s, nil
}

// OpenStore returns the Store over the buckets of the topology (WithTopology;
// Setup creates them): the state in Bucket, the index and the quarantine in
// IndexBucket. Where the state bucket has one replica, the store sends a
// transition's records and header together (WithPipeline).
func OpenStore(ctx context.Context, js jetstream.JetStream, opts ...Option) (*Store, error) {
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	t := o.topology.withDefaults()
	kv, err := js.KeyValue(ctx, t.Bucket)
	if err != nil {
		return nil, fmt.Errorf("natsjs: open bucket %s: %w", t.Bucket, classify(err))
	}
	idx, err := js.KeyValue(ctx, t.IndexBucket)
	if err != nil {
		return nil, fmt.Errorf("natsjs: open bucket %s: %w", t.IndexBucket, classify(err))
	}
	opts = append(opts, WithIndex(idx))
	one, err := pipelinable(ctx, kv)
	if err != nil {
		return nil, fmt.Errorf("natsjs: open bucket %s: status: %w", t.Bucket, classify(err))
	}
	if one {
		opts = append(opts, WithPipeline(js))
	}
	return NewStore(kv, opts...)
}

// Get returns the deliberation stored under id and its revision. It returns
// an error wrapping council.ErrNotFound for an unknown id, council.ErrInvalid
// for an id that is not letters, digits, '-' and '_' or a stored value that
// does not decode, and council.ErrUnavailable when the bucket cannot be read.
func (s *Store) Get(ctx context.Context, id string) (*council.Deliberation, uint64, error) {
	if err := checkKey(id); err != nil {
		return nil, 0, fmt.Errorf("natsjs: get deliberation: %w", err)
	}
	entry, err := s.kv.Get(ctx, id)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return nil, 0, fmt.Errorf("natsjs: get deliberation %s: %w", id, council.ErrNotFound)
	case err != nil:
		return nil, 0, fmt.Errorf("natsjs: get deliberation %s: %w: %w", id, council.ErrUnavailable, err)
	}
	d, err := s.decode(ctx, id, entry.Value())
	if err != nil {
		return nil, 0, fmt.Errorf("natsjs: get deliberation %s: %w", id, err)
	}
	return d, entry.Revision(), nil
}

// decode reads a stored header of id and the records it names.
func (s *Store) decode(ctx context.Context, id string, value []byte) (*council.Deliberation, error) {
	h, err := events.DecodeStateHeader(value)
	if err != nil {
		return nil, err
	}
	if h.ID() != id {
		return nil, council.Invalidf("the value under %s holds deliberation %q", id, h.ID())
	}
	return s.codec.Deliberation(h, func(keys []string) ([][]byte, error) {
		out := make([][]byte, len(keys))
		for i, k := range keys {
			e, err := s.kv.Get(ctx, id+"."+k)
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
				return nil, fmt.Errorf("%w: %w", errMissingRecord, council.Invalidf("record %s.%s is missing", id, k))
			case err != nil:
				return nil, fmt.Errorf("%w: record %s.%s: %w", council.ErrUnavailable, id, k, err)
			}
			out[i] = e.Value()
		}
		return out, nil
	})
}

// Create stores d under d.ID and returns its first revision. It returns an
// error wrapping council.ErrConflict when d.ID exists, council.ErrInvalid for
// a nil d, a bad id or a d that does not encode, and council.ErrUnavailable
// when the bucket cannot be written.
func (s *Store) Create(ctx context.Context, d *council.Deliberation) (uint64, error) {
	header, records, err := s.encode(d)
	if err != nil {
		return 0, fmt.Errorf("natsjs: create deliberation: %w", err)
	}
	if d.Owes() {
		// The index first: a crash after it leaves an index key the sweep
		// removes, never a running deliberation the sweep does not see.
		if _, err := s.idx.Put(ctx, activePrefix+d.ID, nil); err != nil {
			return 0, fmt.Errorf("natsjs: create deliberation %s: index: %w: %w", d.ID, council.ErrUnavailable, err)
		}
	}
	// The task's index (ByTask): a key left by a Create that then fails
	// names no deliberation, and ByTask's callers skip it.
	if _, err := s.idx.Put(ctx, taskKey(d.Task.ID, d.ID), nil); err != nil {
		return 0, fmt.Errorf("natsjs: create deliberation %s: task index: %w: %w", d.ID, council.ErrUnavailable, err)
	}
	rev, err := s.write(ctx, d.ID, records, header, 0)
	if err != nil {
		return 0, fmt.Errorf("natsjs: create deliberation %s: %w", d.ID, err)
	}
	return rev, nil
}

// Update replaces d if revision is its current revision and returns the new
// revision. It returns an error wrapping council.ErrConflict when revision is
// not current (another writer won, or d.ID does not exist), council.ErrInvalid
// for a zero revision, a nil d, a bad id or a d that does not encode, and
// council.ErrUnavailable when the bucket cannot be written.
func (s *Store) Update(ctx context.Context, d *council.Deliberation, revision uint64) (uint64, error) {
	if d != nil && revision == 0 {
		return 0, fmt.Errorf("natsjs: update deliberation %s: %w", d.ID, council.Invalidf("revision 0; use Create"))
	}
	header, records, err := s.encode(d)
	if err != nil {
		return 0, fmt.Errorf("natsjs: update deliberation: %w", err)
	}
	rev, err := s.write(ctx, d.ID, records, header, revision)
	if err != nil {
		return 0, fmt.Errorf("natsjs: update deliberation %s at revision %d: %w", d.ID, revision, err)
	}
	if !d.Owes() {
		// Owes nothing any more: out of the index. A failure here leaves a
		// key the sweep removes when it finds the deliberation done.
		if err := s.unindex(ctx, d.ID); err != nil {
			s.log.WarnContext(ctx, "active index not cleared", "deliberation", d.ID, "error", err)
		}
	}
	return rev, nil
}

// encode checks d and encodes its header and the records the codec does
// not know to be stored.
func (s *Store) encode(d *council.Deliberation) ([]byte, []events.StateRecord, error) {
	if d == nil {
		return nil, nil, council.Invalidf("nil deliberation")
	}
	if err := checkKey(d.ID); err != nil {
		return nil, nil, err
	}
	return s.codec.Encode(d)
}

// write stores the records of deliberation id and then its header: created
// when revision is 0 (council.ErrConflict when it exists), else replaced
// under compare-and-set at revision (council.ErrConflict when another
// writer won). With a pipeline, records and header go together
// (writePipelined); without, one at a time, the records first
// (content-addressed, so an existing key holds the same bytes).
func (s *Store) write(ctx context.Context, id string, records []events.StateRecord, header []byte, revision uint64) (uint64, error) {
	var (
		rev uint64
		err error
	)
	switch {
	case s.pipe != nil && len(records) > 0 && s.pipe.fits(ctx, s.kv, records, header):
		rev, err = s.writePipelined(ctx, id, records, header, revision)
	default:
		for _, r := range records {
			if _, err := s.kv.Create(ctx, id+"."+r.Key, r.Data); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
				return 0, fmt.Errorf("record %s: %w: %w", r.Key, council.ErrUnavailable, err)
			}
		}
		if revision == 0 {
			rev, err = s.kv.Create(ctx, id, header)
		} else {
			rev, err = s.kv.Update(ctx, id, header, revision)
		}
		switch {
		case isRevisionConflict(err):
			err = council.ErrConflict
		case err != nil:
			err = fmt.Errorf("%w: %w", council.ErrUnavailable, err)
		}
	}
	if err != nil {
		return 0, err
	}
	s.codec.Written(id, records)
	return rev, nil
}

// List returns every stored deliberation, in no particular order; an empty
// bucket gives an empty slice. A value that does not decode is set aside
// (Quarantined) and left out. It returns an error wrapping
// council.ErrUnavailable when the bucket cannot be read completely.
func (s *Store) List(ctx context.Context) ([]*council.Deliberation, error) {
	keys, err := s.keys(ctx, s.kv, "*")
	if err != nil {
		return nil, fmt.Errorf("natsjs: list deliberations: %w", err)
	}
	out := make([]*council.Deliberation, 0, len(keys))
	for _, id := range keys {
		d, err := s.load(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("natsjs: list deliberations: %w", err)
		}
		if d != nil {
			out = append(out, d)
		}
	}
	return out, nil
}

// Active returns the deliberations that owe something
// (council.Deliberation.Owes), from the index: its cost follows the
// active deliberations, not everything kept. A value that does not decode
// is set aside (Quarantined) and left out; an index key of a deliberation
// that owes nothing, or of none, is removed. It returns an error wrapping
// council.ErrUnavailable when the bucket cannot be read completely.
func (s *Store) Active(ctx context.Context) ([]*council.Deliberation, error) {
	keys, err := s.keys(ctx, s.idx, activePrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("natsjs: list active deliberations: %w", err)
	}
	out := make([]*council.Deliberation, 0, len(keys))
	for _, k := range keys {
		id := strings.TrimPrefix(k, activePrefix)
		d, err := s.load(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("natsjs: list active deliberations: %w", err)
		}
		switch {
		case d == nil:
			s.dropOrphan(ctx, k)
		case !d.Owes():
			_ = s.unindex(ctx, id) // best effort: found again next time
		default:
			out = append(out, d)
		}
	}
	return out, nil
}

// dropOrphan removes index key k when no header exists for it and the key
// is older than orphanAge.
func (s *Store) dropOrphan(ctx context.Context, k string) {
	id := strings.TrimPrefix(k, activePrefix)
	if _, err := s.kv.Get(ctx, id); !errors.Is(err, jetstream.ErrKeyNotFound) && !errors.Is(err, jetstream.ErrKeyDeleted) {
		return // quarantined (the header is there) or unreadable now
	}
	e, err := s.idx.Get(ctx, k)
	if err != nil || s.now().Sub(e.Created()) < orphanAge {
		return
	}
	_ = s.idx.Purge(ctx, k, jetstream.LastRevision(e.Revision()), jetstream.PurgeTTL(MarkerTTL))
}

// unindex removes id from the index of active deliberations. It purges
// rather than deletes, with a marker that expires (MarkerTTL), so that the
// index does not fill with the markers of every deliberation that ended.
func (s *Store) unindex(ctx context.Context, id string) error {
	err := s.idx.Purge(ctx, activePrefix+id, jetstream.PurgeTTL(MarkerTTL))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return err
}

// load returns deliberation id, or nil when it is gone or does not decode
// (then set aside with the reason).
func (s *Store) load(ctx context.Context, id string) (*council.Deliberation, error) {
	d, _, err := s.Get(ctx, id)
	switch {
	case errors.Is(err, council.ErrNotFound):
		return nil, nil
	case errors.Is(err, errMissingRecord) && s.ended(ctx, id):
		return nil, nil // expiring: its records went first, its header follows
	case errors.Is(err, council.ErrInvalid):
		s.quarantine(ctx, id, err)
		return nil, nil
	case err != nil:
		return nil, err
	}
	return d, nil
}

// ended reports whether the header of id says the deliberation ended.
func (s *Store) ended(ctx context.Context, id string) bool {
	e, err := s.kv.Get(ctx, id)
	if err != nil {
		return false
	}
	h, err := events.DecodeStateHeader(e.Value())
	return err == nil && h.Status().Terminal()
}

// quarantine sets aside the value of id that does not decode: the reason
// under "quarantine.<id>" (the value itself stays under its key for
// inspection), and id out of the index.
func (s *Store) quarantine(ctx context.Context, id string, reason error) {
	body, err := events.EncodeQuarantine(events.Quarantine{ID: id, Reason: reason.Error(), At: s.now()})
	if err == nil {
		_, err = s.idx.Create(ctx, quarantinePrefix+id, body)
	}
	switch {
	case errors.Is(err, jetstream.ErrKeyExists):
		return // set aside before: reported then
	case err != nil:
		s.log.WarnContext(ctx, "quarantine not recorded", "deliberation", id, "reason", reason, "error", err)
		return
	}
	s.log.ErrorContext(ctx, "stored deliberation set aside: it does not decode", "deliberation", id, "error", reason)
	_ = s.unindex(ctx, id)
}

// Quarantined returns the deliberations set aside because their stored
// value does not decode, with the reason. Errors wrap
// council.ErrUnavailable.
func (s *Store) Quarantined(ctx context.Context) ([]council.Quarantined, error) {
	keys, err := s.keys(ctx, s.idx, quarantinePrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("natsjs: list quarantined deliberations: %w", err)
	}
	out := make([]council.Quarantined, 0, len(keys))
	for _, k := range keys {
		e, err := s.idx.Get(ctx, k)
		if err != nil {
			continue // released since it was listed
		}
		q, err := events.DecodeQuarantine(e.Value())
		if err != nil {
			q = events.Quarantine{ID: strings.TrimPrefix(k, quarantinePrefix), Reason: "unreadable quarantine record: " + err.Error()}
		}
		out = append(out, council.Quarantined{ID: q.ID, Reason: q.Reason, At: q.At})
	}
	return out, nil
}

// keys lists the keys that match filter, each once.
func (s *Store) keys(ctx context.Context, kv jetstream.KeyValue, filter string) ([]string, error) {
	lister, err := kv.ListKeysFiltered(ctx, filter)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", council.ErrUnavailable, err)
	}
	var keys []string
	seen := map[string]bool{}
	for k := range lister.Keys() {
		if !seen[k] { // a key written during the listing may come twice
			seen[k] = true
			keys = append(keys, k)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", council.ErrUnavailable, err)
	}
	return keys, nil
}

func checkKey(id string) error { return council.CheckDeliberationID(id) }

// isRevisionConflict reports whether err is a lost compare-and-set
// (natserr.IsConflict).
func isRevisionConflict(err error) bool { return natserr.IsConflict(err) }

// taskPrefix starts the keys of the task index: "task.<hash of the task
// id>.<deliberation id>" (three tokens: no clash with the other index keys).
const taskPrefix = "task."

// taskKey is the index key of deliberation id of task taskID: task ids are
// free text, so the key holds the first 128 bits of their SHA-256.
func taskKey(taskID, id string) string {
	return taskPrefix + taskHash(taskID) + "." + id
}

func taskHash(taskID string) string {
	sum := sha256.Sum256([]byte(taskID))
	return hex.EncodeToString(sum[:16])
}

// ByTask returns the ids of the deliberations created for task taskID, in
// no particular order (deliberations created before the task index are not
// in it). An id whose deliberation is gone may be listed. Errors wrap
// council.ErrUnavailable.
func (s *Store) ByTask(ctx context.Context, taskID string) ([]string, error) {
	keys, err := s.keys(ctx, s.idx, taskPrefix+taskHash(taskID)+".*")
	if err != nil {
		return nil, fmt.Errorf("natsjs: deliberations of task: %w", err)
	}
	ids := make([]string, 0, len(keys))
	for _, k := range keys {
		ids = append(ids, k[strings.LastIndexByte(k, '.')+1:])
	}
	return ids, nil
}

// errMissingRecord marks a header that names a record the bucket no longer
// holds: corruption, or the end of the bucket's TTL (records are older than
// the header, so they expire first).
var errMissingRecord = errors.New("record missing")

// tallyKey holds the durable tally of ended deliberations (two tokens, like
// the index keys: no header nor record has that form).
const tallyKey = "stats.tally"

// CountEnd adds the end of d to the tally under compare-and-set; counting
// the same end again changes nothing (council.Tally keeps the last ids).
// Errors wrap council.ErrUnavailable (the bucket) or council.ErrInvalid (a
// stored tally that does not decode).
func (s *Store) CountEnd(ctx context.Context, d *council.Deliberation) error {
	if d == nil || !d.Status.Terminal() {
		return nil
	}
	for range 50 {
		t, rev, err := s.tally(ctx)
		if err != nil {
			return fmt.Errorf("natsjs: count the end of %s: %w", d.ID, err)
		}
		if !t.Count(d) {
			return nil
		}
		b, err := events.EncodeTally(t)
		if err != nil {
			return fmt.Errorf("natsjs: count the end of %s: %w", d.ID, err)
		}
		if rev == 0 {
			_, err = s.kv.Create(ctx, tallyKey, b)
		} else {
			_, err = s.kv.Update(ctx, tallyKey, b, rev)
		}
		switch {
		case err == nil:
			return nil
		case !isRevisionConflict(err):
			return fmt.Errorf("natsjs: count the end of %s: %w: %w", d.ID, council.ErrUnavailable, err)
		}
	}
	return fmt.Errorf("natsjs: count the end of %s: %w", d.ID, council.Unavailablef("too many concurrent updates of the tally"))
}

// Tally returns the durable tally of ended deliberations. Like every key,
// it is dropped after the bucket's TTL without a change (no end for that long).
func (s *Store) Tally(ctx context.Context) (council.Tally, error) {
	t, _, err := s.tally(ctx)
	if err != nil {
		return council.Tally{}, fmt.Errorf("natsjs: tally: %w", err)
	}
	return t, nil
}

func (s *Store) tally(ctx context.Context) (council.Tally, uint64, error) {
	e, err := s.kv.Get(ctx, tallyKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return council.Tally{}, 0, nil
	case err != nil:
		return council.Tally{}, 0, fmt.Errorf("%w: %w", council.ErrUnavailable, err)
	}
	t, err := events.DecodeTally(e.Value())
	return t, e.Revision(), err
}

// indexedKey marks, in the index bucket, that the index covers every
// deliberation the state bucket held when it was built.
const indexedKey = "meta.indexed"

// EnsureIndexed builds the index of active deliberations once for a state
// bucket written before it existed (an upgrade: deliberations still running
// then have no index key, and the sweep, which reads the index, would never
// see them). It lists every stored deliberation, indexes those that owe
// something, and marks the index bucket so that later calls cost one read.
// Running it again, or from two instances at once, is harmless.
func (s *Store) EnsureIndexed(ctx context.Context) error {
	if _, err := s.idx.Get(ctx, indexedKey); err == nil {
		return nil
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("natsjs: index: %w: %w", council.ErrUnavailable, err)
	}
	all, err := s.List(ctx)
	if err != nil {
		return fmt.Errorf("natsjs: index: %w", err)
	}
	indexed := 0
	for _, d := range all {
		if !d.Owes() {
			continue
		}
		if _, err := s.idx.Put(ctx, activePrefix+d.ID, nil); err != nil {
			return fmt.Errorf("natsjs: index %s: %w: %w", d.ID, council.ErrUnavailable, err)
		}
		indexed++
	}
	if _, err := s.idx.Put(ctx, indexedKey, []byte(s.now().UTC().Format(time.RFC3339))); err != nil {
		return fmt.Errorf("natsjs: index: %w: %w", council.ErrUnavailable, err)
	}
	if indexed > 0 {
		s.log.InfoContext(ctx, "index of active deliberations built", "stored", len(all), "active", indexed)
	}
	return nil
}
