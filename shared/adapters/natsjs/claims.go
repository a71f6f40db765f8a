package natsjs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/shared/council"
)

// Claims is the council.WorkClaims adapter on a JetStream KV bucket
// (Topology.ClaimsBucket, created by Setup): one key per work item and
// attempt (council.ClaimKey), created atomically (KV Create), with a
// per-key TTL — the lease of work in flight, renewed while it runs, then
// the keep of its answer — so that a claim left by a crashed handler
// expires and a redelivery takes the work over. Reads and writes are one
// round trip each: a duplicate costs a Create and a Get, never an LLM call.
type Claims struct {
	js     jetstream.JetStream
	bucket string
	prefix string // the subject prefix of the bucket's keys

	mu     sync.Mutex
	opened jetstream.KeyValue // nil until the bucket is first opened
}

var _ council.WorkClaims = (*Claims)(nil)

// A claim's value: inFlight, or answered followed by the reply.
var (
	inFlight = []byte("in-flight")
	answered = []byte("answered\n")
)

// NewClaims returns the claims of the topology of opts (WithTopology) on
// js; the bucket, which Setup creates, is opened at the first claim (and
// again after a failure), so that a function starts while NATS is away.
func NewClaims(js jetstream.JetStream, opts ...Option) (*Claims, error) {
	if js == nil {
		return nil, errors.New("natsjs: new claims: nil JetStream")
	}
	o, err := newOptions(opts)
	if err != nil {
		return nil, err
	}
	t := o.topology.withDefaults()
	return &Claims{js: js, bucket: t.ClaimsBucket, prefix: "$KV." + t.ClaimsBucket + "."}, nil
}

// OpenClaims is NewClaims with the bucket opened now. It returns an error
// wrapping council.ErrUnavailable when NATS cannot be reached.
func OpenClaims(ctx context.Context, js jetstream.JetStream, opts ...Option) (*Claims, error) {
	c, err := NewClaims(js, opts...)
	if err != nil {
		return nil, err
	}
	if _, err := c.kv(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// kv returns the bucket, opening it the first time.
func (c *Claims) kv(ctx context.Context) (jetstream.KeyValue, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.opened == nil {
		kv, err := c.js.KeyValue(ctx, c.bucket)
		if err != nil {
			return nil, fmt.Errorf("natsjs: open bucket %s: %w", c.bucket, classify(err))
		}
		c.opened = kv
	}
	return c.opened, nil
}

// Claim takes key for lease, or reports who has it (council.WorkClaims).
func (c *Claims) Claim(ctx context.Context, key string, lease time.Duration) (council.Claim, error) {
	kv, err := c.kv(ctx)
	if err != nil {
		return council.Claim{}, err
	}
	for range 3 {
		rev, err := kv.Create(ctx, key, inFlight, jetstream.KeyTTL(ttlOf(lease)))
		if err == nil {
			return council.Claim{Key: key, State: council.ClaimTaken, Revision: rev}, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return council.Claim{}, fmt.Errorf("natsjs: claim %s: %w", key, classifyKV(err))
		}
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue // expired or released between the two: claim again
		}
		if err != nil {
			return council.Claim{}, fmt.Errorf("natsjs: claim %s: %w", key, classifyKV(err))
		}
		if reply, ok := bytes.CutPrefix(e.Value(), answered); ok {
			return council.Claim{Key: key, State: council.ClaimAnswered, Reply: reply, Revision: e.Revision()}, nil
		}
		return council.Claim{Key: key, State: council.ClaimInFlight, Revision: e.Revision()}, nil
	}
	return council.Claim{}, fmt.Errorf("natsjs: claim %s: %w: it came and went three times", key, council.ErrUnavailable)
}

// Renew extends a taken claim by lease.
func (c *Claims) Renew(ctx context.Context, cl *council.Claim, lease time.Duration) error {
	return c.write(ctx, cl, inFlight, lease)
}

// Answer stores reply in a taken claim, kept for keep.
func (c *Claims) Answer(ctx context.Context, cl *council.Claim, reply []byte, keep time.Duration) error {
	v := make([]byte, 0, len(answered)+len(reply))
	if err := c.write(ctx, cl, append(append(v, answered...), reply...), keep); err != nil {
		return err
	}
	cl.State, cl.Reply = council.ClaimAnswered, reply
	return nil
}

// Release deletes a taken claim, if it is still the caller's.
func (c *Claims) Release(ctx context.Context, cl council.Claim) error {
	kv, err := c.kv(ctx)
	if err != nil {
		return err
	}
	if err := kv.Delete(ctx, cl.Key, jetstream.LastRevision(cl.Revision)); err != nil {
		return fmt.Errorf("natsjs: release claim %s: %w", cl.Key, classifyKV(err))
	}
	return nil
}

// write replaces the claim's value if its revision is still cl's, with a
// TTL of ttl: KV Update with a per-message TTL, which the KV API offers on
// Create only.
func (c *Claims) write(ctx context.Context, cl *council.Claim, value []byte, ttl time.Duration) error {
	if strings.ContainsAny(cl.Key, "*> ") || cl.Key == "" {
		return fmt.Errorf("natsjs: claim %q: %w", cl.Key, council.Invalidf("not a literal key"))
	}
	m := &nats.Msg{Subject: c.prefix + cl.Key, Header: nats.Header{}, Data: value}
	ack, err := c.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(cl.Revision), jetstream.WithMsgTTL(ttlOf(ttl)))
	if err != nil {
		return fmt.Errorf("natsjs: claim %s: %w", cl.Key, classifyKV(err))
	}
	cl.Revision = ack.Sequence
	return nil
}

// ttlOf rounds a TTL up to the server's resolution of one second.
func ttlOf(d time.Duration) time.Duration {
	return max(d.Round(time.Second), time.Second)
}

// classifyKV classifies a KV error; a lost compare-and-set is ErrConflict.
func classifyKV(err error) error {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("%w: %w", council.ErrConflict, err)
	}
	return classify(err)
}
