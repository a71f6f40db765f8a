package natsjs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/events"
	"council.dev/shared/council"
)

// Pipelined writes (ADR 8): a transition stores its new records and then
// its header. Sent one after the other, each waiting for its ack, that is
// two round trips; sent together on one connection and acknowledged
// together, it is one. The order still holds: a stream with one replica
// stores the messages one connection publishes in the order they arrive,
// so the records are stored before the header that names them, unless the
// server refuses a record. Then the store writes the record again before it
// answers (see writePipelined). A bucket with more replicas is written one
// message at a time: a change of leader between two messages could store
// the header and lose the record.

// pipeline publishes to the bucket's subjects asynchronously.
type pipeline struct {
	js jetstream.JetStream
	// prefix is the subject prefix of the bucket's keys: "$KV.<bucket>.".
	prefix string

	mu sync.Mutex
	// limit is the largest message (key and value) the pipeline sends:
	// below the server's max payload and the bucket's largest value, so
	// that the server cannot refuse a record for its size; 0 until read.
	limit int
}

// pipelineMargin is what a message's subject and headers may take.
const pipelineMargin = 1024

// fits reports whether every record and the header of a write are small
// enough to be pipelined, reading the limits once.
func (p *pipeline) fits(ctx context.Context, kv jetstream.KeyValue, records []events.StateRecord, header []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.limit == 0 {
		st, err := kv.Status(ctx)
		if err != nil {
			return false
		}
		limit := int(p.js.Conn().MaxPayload())
		if bs, ok := st.(*jetstream.KeyValueBucketStatus); ok && bs.StreamInfo() != nil {
			if v := int(bs.StreamInfo().Config.MaxMsgSize); v > 0 && v < limit {
				limit = v
			}
		}
		p.limit = limit - pipelineMargin
	}
	if len(header) > p.limit {
		return false
	}
	for _, r := range records {
		if len(r.Data)+len(r.Key) > p.limit {
			return false
		}
	}
	return true
}

// WithPipeline makes the Store send a transition's records and header
// together over js, acknowledged together: one round trip instead of two.
// Use it only when the state bucket has one replica and is addressed by
// "$KV.<bucket>." on js's connection; OpenStore sets it when that holds.
func WithPipeline(js jetstream.JetStream) Option {
	return func(o *options) error {
		if js == nil {
			return errors.New("nil JetStream for the pipeline")
		}
		o.pipeline = js
		return nil
	}
}

// pipelinable reports whether the bucket of kv has one replica.
func pipelinable(ctx context.Context, kv jetstream.KeyValue) (bool, error) {
	st, err := kv.Status(ctx)
	if err != nil {
		return false, err
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok || bs.StreamInfo() == nil {
		return false, nil
	}
	cfg := bs.StreamInfo().Config
	return cfg.Replicas <= 1 && cfg.Mirror == nil && len(cfg.Sources) == 0, nil
}

// pipelineAttempts bounds how often a refused record is written again
// after its header was stored (writePipelined).
const pipelineAttempts = 5

// writePipelined publishes the records of deliberation id (create if
// absent: content-addressed, so one that exists holds the same bytes) and
// then its header (created when revision is 0, else compare-and-set at
// revision), and waits for every ack. It returns the header's revision.
// A refused header is a conflict (council.ErrConflict) or unavailability
// (council.ErrUnavailable); records refused for another reason than
// existing are written again, one at a time, before it answers, so that a
// stored header never names a missing record; it returns
// council.ErrUnavailable if they still cannot be written. The caller sends
// only writes that fit (pipeline.fits): the server refuses no record for
// its size.
func (s *Store) writePipelined(ctx context.Context, id string, records []events.StateRecord, header []byte, revision uint64) (uint64, error) {
	p := s.pipe
	futures := make([]jetstream.PubAckFuture, 0, len(records)+1)
	publish := func(key string, data []byte, expect uint64) error {
		m := nats.NewMsg(p.prefix + key)
		m.Data = data
		f, err := p.js.PublishMsgAsync(m, jetstream.WithExpectLastSequencePerSubject(expect), jetstream.WithRetryAttempts(0))
		if err != nil {
			return err
		}
		futures = append(futures, f)
		return nil
	}
	for _, r := range records {
		if err := publish(id+"."+r.Key, r.Data, 0); err != nil {
			return 0, fmt.Errorf("%s: record %s: %w: %w", id, r.Key, council.ErrUnavailable, err)
		}
	}
	if err := publish(id, header, revision); err != nil {
		return 0, fmt.Errorf("%s: %w: %w", id, council.ErrUnavailable, err)
	}
	acks := make([]error, len(futures))
	var rev uint64
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			rev = ack.Sequence
		case err := <-f.Err():
			acks[i] = err
		case <-ctx.Done():
			return 0, fmt.Errorf("%s: %w: %w", id, council.ErrUnavailable, ctx.Err())
		}
	}
	if err := acks[len(acks)-1]; err != nil {
		if isRevisionConflict(err) {
			return 0, fmt.Errorf("%s: %w", id, council.ErrConflict)
		}
		return 0, fmt.Errorf("%s: %w: %w", id, council.ErrUnavailable, err)
	}
	for i, err := range acks[:len(records)] {
		if err == nil || isRevisionConflict(err) {
			continue // stored now, or before
		}
		// The header is stored and names this record: write it again.
		if err := s.rewrite(ctx, id+"."+records[i].Key, records[i].Data); err != nil {
			s.log.ErrorContext(ctx, "record refused after its header was stored", "deliberation", id, "record", records[i].Key, "error", err)
			return 0, fmt.Errorf("%s: record %s: %w: %w", id, records[i].Key, council.ErrUnavailable, err)
		}
	}
	return rev, nil
}

// rewrite creates key with data, trying a few times with a growing pause.
func (s *Store) rewrite(ctx context.Context, key string, data []byte) error {
	var err error
	wait := 50 * time.Millisecond
	for range pipelineAttempts {
		if _, err = s.kv.Create(ctx, key, data); err == nil || errors.Is(err, jetstream.ErrKeyExists) {
			return nil
		}
		select {
		case <-time.After(wait):
			wait *= 2
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}
