package rayexecutor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"council.dev/shared/council"
)

// Defaults of the submissions bucket.
const (
	// DefaultBucket is the KV bucket of recent submissions.
	DefaultBucket = "council-rayexecutor"
	// DefaultWindow is how long a submission is remembered: a retry within
	// it maps to the same deliberation; one after it starts a new one.
	DefaultWindow = 10 * time.Minute
)

// record is what the bucket keeps of one submission, under its request key.
type record struct {
	EventID        string    `json:"event_id"`
	DeliberationID string    `json:"deliberation_id"`
	TaskID         string    `json:"task_id"`
	SubmittedAt    time.Time `json:"submitted_at"`
}

// Submissions remembers recent submissions in a JetStream KV bucket whose
// entries expire after the window (the bucket's TTL): under "req.<digest of
// the idempotency key>" the event and deliberation a request became, and
// under "dlb.<deliberation id>" that the deliberation was submitted (so a
// status query between the submission and execute's acceptance answers
// running, not not_found).
type Submissions struct {
	kv     jetstream.KeyValue
	window time.Duration
}

// OpenSubmissions creates the bucket, or updates it to window and replicas,
// and returns its Submissions. Errors wrap council.ErrInvalid for a bad
// name or window and council.ErrUnavailable when NATS does not answer.
func OpenSubmissions(ctx context.Context, js jetstream.JetStream, bucket string, window time.Duration, replicas int) (*Submissions, error) {
	if window <= 0 {
		return nil, council.Invalidf("rayexecutor: idempotency window %s: want a positive duration", window)
	}
	if replicas < 1 {
		replicas = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: bucket, Description: "submissions to council's Ray Executor façade (idempotency window)",
		History: 1, TTL: window, Storage: jetstream.FileStorage, Replicas: replicas,
	})
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.Code != 503 {
			return nil, fmt.Errorf("rayexecutor: bucket %s: %w: %w", bucket, council.ErrInvalid, err)
		}
		return nil, fmt.Errorf("rayexecutor: bucket %s: %w: %w", bucket, council.ErrUnavailable, err)
	}
	return &Submissions{kv: kv, window: window}, nil
}

// Window is how long a submission is remembered.
func (s *Submissions) Window() time.Duration { return s.window }

func requestKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "req." + hex.EncodeToString(sum[:])
}

func deliberationKey(id string) string { return "dlb." + id }

// claim records rec under key unless a submission within the window
// already has it: then it returns that one's record and false. Errors wrap
// council.ErrUnavailable.
func (s *Submissions) claim(ctx context.Context, key string, rec record) (record, bool, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return record{}, false, fmt.Errorf("rayexecutor: encode submission: %w", err)
	}
	k := requestKey(key)
	for range 3 {
		_, err := s.kv.Create(ctx, k, b)
		if err == nil {
			// Best effort: a status query before acceptance answers running.
			if _, err := s.kv.Put(ctx, deliberationKey(rec.DeliberationID), []byte(rec.TaskID)); err != nil {
				return record{}, false, fmt.Errorf("rayexecutor: record submission: %w: %w", council.ErrUnavailable, err)
			}
			return rec, true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return record{}, false, fmt.Errorf("rayexecutor: record submission: %w: %w", council.ErrUnavailable, err)
		}
		e, err := s.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired between the two calls: claim again
		}
		if err != nil {
			return record{}, false, fmt.Errorf("rayexecutor: read submission: %w: %w", council.ErrUnavailable, err)
		}
		var prev record
		if err := json.Unmarshal(e.Value(), &prev); err != nil || prev.EventID == "" {
			// Not ours to read: replace it with this submission.
			if _, err := s.kv.Update(ctx, k, b, e.Revision()); err != nil {
				continue
			}
			return rec, true, nil
		}
		return prev, false, nil
	}
	return record{}, false, council.Unavailablef("rayexecutor: record submission: the key keeps changing")
}

// submitted reports whether deliberation id was submitted within the window.
func (s *Submissions) submitted(ctx context.Context, id string) (bool, error) {
	if !storable(id) {
		return false, nil // no submission has such an id
	}
	_, err := s.kv.Get(ctx, deliberationKey(id))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("rayexecutor: read submission %s: %w: %w", id, council.ErrUnavailable, err)
	}
}

// storable reports whether id can name a deliberation (and so a key).
func storable(id string) bool { return council.CheckDeliberationID(id) == nil }
