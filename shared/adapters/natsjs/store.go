package natsjs

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"council.dev/events"
	"council.dev/shared/council"
)

// Store keeps deliberations as JSON in a JetStream KV bucket, one key per
// deliberation id, with the KV revision as compare-and-set token. It is safe
// for concurrent use.
type Store struct {
	kv jetstream.KeyValue
}

var _ council.Store = (*Store)(nil)

// NewStore returns a Store over kv (the bucket Setup creates; open it with
// js.KeyValue(ctx, natsjs.DefaultBucket)). It takes no options yet;
// opts is there so that adding one does not change the signature.
func NewStore(kv jetstream.KeyValue, opts ...Option) (*Store, error) {
	if kv == nil {
		return nil, errors.New("natsjs: new store: nil KeyValue")
	}
	if _, err := newOptions(opts); err != nil {
		return nil, err
	}
	return &Store{kv: kv}, nil
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
	d, err := decodeDeliberation(entry.Value())
	if err != nil {
		return nil, 0, fmt.Errorf("natsjs: get deliberation %s: %w", id, err)
	}
	return d, entry.Revision(), nil
}

// Create stores d under d.ID and returns its first revision. It returns an
// error wrapping council.ErrConflict when d.ID exists, council.ErrInvalid for
// a nil d, a bad id or a d that does not encode, and council.ErrUnavailable
// when the bucket cannot be written.
func (s *Store) Create(ctx context.Context, d *council.Deliberation) (uint64, error) {
	id, body, err := encodeDeliberation(d)
	if err != nil {
		return 0, fmt.Errorf("natsjs: create deliberation: %w", err)
	}
	rev, err := s.kv.Create(ctx, id, body)
	switch {
	case errors.Is(err, jetstream.ErrKeyExists):
		return 0, fmt.Errorf("natsjs: create deliberation %s: %w", id, council.ErrConflict)
	case err != nil:
		return 0, fmt.Errorf("natsjs: create deliberation %s: %w: %w", id, council.ErrUnavailable, err)
	}
	return rev, nil
}

// Update replaces d if revision is its current revision and returns the new
// revision. It returns an error wrapping council.ErrConflict when revision is
// not current (another writer won, or d.ID does not exist), council.ErrInvalid
// for a zero revision, a nil d, a bad id or a d that does not encode, and
// council.ErrUnavailable when the bucket cannot be written.
func (s *Store) Update(ctx context.Context, d *council.Deliberation, revision uint64) (uint64, error) {
	id, body, err := encodeDeliberation(d)
	if err != nil {
		return 0, fmt.Errorf("natsjs: update deliberation: %w", err)
	}
	if revision == 0 {
		return 0, fmt.Errorf("natsjs: update deliberation %s: %w", id, council.Invalidf("revision 0; use Create"))
	}
	rev, err := s.kv.Update(ctx, id, body, revision)
	switch {
	case isRevisionConflict(err):
		return 0, fmt.Errorf("natsjs: update deliberation %s at revision %d: %w", id, revision, council.ErrConflict)
	case err != nil:
		return 0, fmt.Errorf("natsjs: update deliberation %s: %w: %w", id, council.ErrUnavailable, err)
	}
	return rev, nil
}

// List returns the current value of every deliberation in the bucket, in no
// particular order; an empty bucket gives an empty slice. It returns an error
// wrapping council.ErrInvalid when a stored value does not decode and
// council.ErrUnavailable when the bucket cannot be read completely.
func (s *Store) List(ctx context.Context) ([]*council.Deliberation, error) {
	lister, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("natsjs: list deliberations: %w: %w", council.ErrUnavailable, err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("natsjs: list deliberations: %w: %w", council.ErrUnavailable, err)
	}
	out := make([]*council.Deliberation, 0, len(keys))
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		if seen[k] {
			continue // ListKeys may repeat a key written during the listing
		}
		seen[k] = true
		d, _, err := s.Get(ctx, k)
		switch {
		case errors.Is(err, council.ErrNotFound):
			continue // deleted since it was listed
		case err != nil:
			return nil, fmt.Errorf("natsjs: list deliberations: %w", err)
		}
		out = append(out, d)
	}
	return out, nil
}

// encodeDeliberation is the stored form of d (events.EncodeState: the
// versioned state format), keyed by its id.
func encodeDeliberation(d *council.Deliberation) (string, []byte, error) {
	if d == nil {
		return "", nil, council.Invalidf("nil deliberation")
	}
	if err := checkKey(d.ID); err != nil {
		return "", nil, err
	}
	body, err := events.EncodeState(d)
	if err != nil {
		return "", nil, fmt.Errorf("encode %s: %w", d.ID, err)
	}
	return d.ID, body, nil
}

// decodeDeliberation reads a stored value (events.DecodeState: every
// version this build knows, and the unversioned values written before).
func decodeDeliberation(b []byte) (*council.Deliberation, error) {
	d, err := events.DecodeState(b)
	if err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return d, nil
}

func checkKey(id string) error { return council.CheckDeliberationID(id) }

// isRevisionConflict reports whether err is a lost compare-and-set: the
// client's ErrKeyRevisionMismatch, or the server's "wrong last sequence"
// (10071, or 10164 on replicated streams) where a client did not map it.
func isRevisionConflict(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
