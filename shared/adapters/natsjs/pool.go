package natsjs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"council.dev/shared/council"
)

// The warm pool of the Ray backend (ADR 10): execute puts the id of each
// backend ray deliberation on a JetStream work queue; council-agent workers,
// long-lived in a Ray job, take them one at a time, run them, and
// acknowledge them when the outcome is recorded. A worker reports progress
// while it runs; a worker that dies stops reporting, and the server gives
// the deliberation to another worker after the ack wait, which runs it
// from the stored state (the outcome is recorded once: compare-and-set).

// Pool defaults.
const (
	DefaultPoolStream   = "COUNCIL_RAY_WORK"
	DefaultPoolSubject  = "council.ray.work"
	DefaultPoolConsumer = "council-ray-pool"
	// DefaultPoolAckWait is how long a worker may stay silent before its
	// deliberation goes to another worker; a running worker reports
	// progress every third of it.
	DefaultPoolAckWait = 30 * time.Second
	// DefaultPoolMaxAge bounds how long a deliberation waits for a worker
	// (its deadline is shorter in practice).
	DefaultPoolMaxAge = 24 * time.Hour
)

// PoolConfig names the work queue of the pool. Zero fields take the defaults.
type PoolConfig struct {
	Stream   string
	Subject  string
	Consumer string
	// AckWait is how long a worker may stay silent (DefaultPoolAckWait).
	AckWait time.Duration
	// MaxDeliver bounds how often one deliberation is given to a worker
	// (0: unbounded; its deadline ends it anyway).
	MaxDeliver int
	// Replicas of the stream (1).
	Replicas int
}

func (c PoolConfig) withDefaults() PoolConfig {
	if c.Stream == "" {
		c.Stream = DefaultPoolStream
	}
	if c.Subject == "" {
		c.Subject = DefaultPoolSubject
	}
	if c.Consumer == "" {
		c.Consumer = DefaultPoolConsumer
	}
	if c.AckWait <= 0 {
		c.AckWait = DefaultPoolAckWait
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	return c
}

// SetupPool creates (or updates) the work queue of the pool and its
// consumer. Errors wrap council.ErrInvalid or council.ErrUnavailable.
func SetupPool(ctx context.Context, js jetstream.JetStream, c PoolConfig) (jetstream.Consumer, error) {
	c = c.withDefaults()
	if !validID(c.Stream) || !validID(c.Consumer) || !validSubject(c.Subject) {
		return nil, fmt.Errorf("natsjs: setup pool: %w", council.Invalidf("stream %q, subject %q, consumer %q", c.Stream, c.Subject, c.Consumer))
	}
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        c.Stream,
		Description: "council: backend ray deliberations waiting for a pool worker",
		Subjects:    []string{c.Subject},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      DefaultPoolMaxAge,
		Duplicates:  2 * time.Minute,
		Replicas:    c.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("natsjs: setup pool stream %s: %w", c.Stream, classify(err))
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, c.Stream, jetstream.ConsumerConfig{
		Durable:       c.Consumer,
		Description:   "council-agent pool workers",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    c.MaxDeliver,
		FilterSubject: c.Subject,
		MaxAckPending: -1,
	})
	if err != nil {
		return nil, fmt.Errorf("natsjs: setup pool consumer %s: %w", c.Consumer, classify(err))
	}
	return cons, nil
}

// PoolQueue puts deliberations on the pool's work queue.
type PoolQueue struct {
	js jetstream.JetStream
	c  PoolConfig
}

// NewPoolQueue returns the queue of c on js (SetupPool creates it).
func NewPoolQueue(js jetstream.JetStream, c PoolConfig) (*PoolQueue, error) {
	if js == nil {
		return nil, errors.New("natsjs: pool queue: nil JetStream")
	}
	return &PoolQueue{js: js, c: c.withDefaults()}, nil
}

// Enqueue puts run (the pool run's id, council.JobRef.SubmissionID) of
// deliberation id on the queue; the same run again within the stream's
// duplicate window is dropped by the server. Errors wrap
// council.ErrUnavailable.
func (q *PoolQueue) Enqueue(ctx context.Context, id, run string) error {
	_, err := q.js.Publish(ctx, q.c.Subject, []byte(id), jetstream.WithMsgID(run))
	if err != nil {
		return fmt.Errorf("natsjs: enqueue %s: %w: %w", id, council.ErrUnavailable, err)
	}
	return nil
}

// Pending returns how many deliberations wait for a worker.
func (q *PoolQueue) Pending(ctx context.Context) (uint64, error) {
	cons, err := q.js.Consumer(ctx, q.c.Stream, q.c.Consumer)
	if err != nil {
		return 0, fmt.Errorf("natsjs: pool consumer: %w", classify(err))
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("natsjs: pool consumer: %w", classify(err))
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}

// PoolWorkers runs deliberations from the pool's work queue with run, as
// many at once as wait, up to Max (one goroutine each). run's error decides
// the message's fate: nil acknowledges it, an error wrapping
// council.ErrInvalid terminates it (no worker can run it), any other makes
// it available again after a pause.
type PoolWorkers struct {
	Consumer jetstream.Consumer
	AckWait  time.Duration
	Max      int
	Log      *slog.Logger
	// Retry is the pause before a failed deliberation is given out again
	// (default 5 s).
	Retry time.Duration
}

// Run takes deliberations until ctx ends, then waits for the running ones
// (their contexts are cancelled: the messages go back to the queue).
func (w *PoolWorkers) Run(ctx context.Context, run func(ctx context.Context, id string) error) error {
	hi := max(w.Max, 1)
	retry := w.Retry
	if retry <= 0 {
		retry = 5 * time.Second
	}
	log := w.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	beat := max(w.AckWait/3, 100*time.Millisecond)
	slots := make(chan struct{}, hi)
	var wg sync.WaitGroup
	defer wg.Wait()
	for ctx.Err() == nil {
		// Fetch what fits, up to hi running (the queue decides how many
		// come).
		free := hi - len(slots)
		if free == 0 {
			select {
			case slots <- struct{}{}: // wait for one to finish
				<-slots
			case <-ctx.Done():
			}
			continue
		}
		batch, err := w.Consumer.Fetch(free, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			log.Warn("pool fetch", "error", err)
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
			}
			continue
		}
		for msg := range batch.Messages() {
			slots <- struct{}{}
			wg.Go(func() {
				defer func() { <-slots }()
				w.handle(ctx, msg, beat, retry, log, run)
			})
		}
	}
	return ctx.Err()
}

func (w *PoolWorkers) handle(ctx context.Context, msg jetstream.Msg, beat, retry time.Duration, log *slog.Logger, run func(context.Context, string) error) {
	id := string(msg.Data())
	if err := council.CheckDeliberationID(id); err != nil {
		log.Error("pool: bad work item, dropped", "error", err)
		_ = msg.Term()
		return
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		t := time.NewTicker(beat)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				_ = msg.InProgress()
			case <-rctx.Done():
				return
			}
		}
	}()
	err := run(rctx, id)
	switch {
	case err == nil:
		if err := msg.DoubleAck(ctx); err != nil {
			log.Warn("pool: ack", "deliberation", id, "error", err)
		}
	case errors.Is(err, council.ErrInvalid):
		log.Error("pool: deliberation cannot run, dropped", "deliberation", id, "error", err)
		_ = msg.TermWithReason(err.Error())
	default:
		log.Warn("pool: deliberation not run, given out again", "deliberation", id, "error", err, "after", retry)
		_ = msg.NakWithDelay(retry)
	}
}
