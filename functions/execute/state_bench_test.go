package execute_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/events"
	"council.dev/functions/execute"
	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/adapters/natsjs/natstest"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// The benchmarks of this file measure the state path as it runs in
// production: execute's Outbox and Function over the JetStream KV store
// (natsjs.NewStore) on an embedded nats-server, with the recording emitter
// of counciltest. Their baselines are the bare KV operations underneath
// (kv.Put, kv.ListKeys) on the same bucket, measured in the same process.

// stateBenchT0 is the clock of these benchmarks: fixed, so no deadline
// passes and no request is due to be sent again.
var stateBenchT0 = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

func stateBenchNow() time.Time { return stateBenchT0 }

const stateBenchSource = "council.dev/execute"

// countingKV is the bucket as the store sees it: every write method adds
// the bytes it sends to NATS (key + value) to written, and Update counts
// the compare-and-sets it loses. Reads pass through untouched.
type countingKV struct {
	jetstream.KeyValue
	written *atomic.Int64
}

func (k *countingKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	k.written.Add(int64(len(key) + len(value)))
	return k.KeyValue.Put(ctx, key, value)
}

func (k *countingKV) PutString(ctx context.Context, key, value string) (uint64, error) {
	k.written.Add(int64(len(key) + len(value)))
	return k.KeyValue.PutString(ctx, key, value)
}

func (k *countingKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	k.written.Add(int64(len(key) + len(value)))
	return k.KeyValue.Create(ctx, key, value, opts...)
}

func (k *countingKV) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	k.written.Add(int64(len(key) + len(value)))
	return k.KeyValue.Update(ctx, key, value, revision)
}

func (k *countingKV) Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	k.written.Add(int64(len(key)))
	return k.KeyValue.Delete(ctx, key, opts...)
}

func (k *countingKV) Purge(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	k.written.Add(int64(len(key)))
	return k.KeyValue.Purge(ctx, key, opts...)
}

// countingJS is the JetStream handle the store pipelines its writes on
// (natsjs.WithPipeline): it adds the bytes of each message it publishes
// to the bucket (key + value) to written.
type countingJS struct {
	jetstream.JetStream
	prefix  string
	written *atomic.Int64
}

func (j *countingJS) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	j.written.Add(int64(len(strings.TrimPrefix(m.Subject, j.prefix)) + len(m.Data)))
	return j.JetStream.PublishMsgAsync(m, opts...)
}

// countingStore is the store, counting its lost compare-and-sets.
type countingStore struct {
	*natsjs.Store
	conflict atomic.Int64
}

func (s *countingStore) Update(ctx context.Context, d *council.Deliberation, revision uint64) (uint64, error) {
	rev, err := s.Store.Update(ctx, d, revision)
	if errors.Is(err, council.ErrConflict) {
		s.conflict.Add(1)
	}
	return rev, err
}

// stateEnv is an embedded JetStream server with the council topology, the
// deliberation bucket (raw, for the baselines, and counted, under the
// store) and the store.
type stateEnv struct {
	raw   jetstream.KeyValue
	kv    *countingKV
	store *countingStore
}

func newStateEnv(b *testing.B) stateEnv {
	b.Helper()
	_, _, js := natstest.Start(b)
	ctx := context.Background()
	if err := natsjs.Setup(ctx, js, natsjs.DefaultTopology()); err != nil {
		b.Fatalf("Setup: %v", err)
	}
	raw, err := js.KeyValue(ctx, natsjs.DefaultBucket)
	if err != nil {
		b.Fatal(err)
	}
	kv := &countingKV{KeyValue: raw, written: new(atomic.Int64)}
	idx, err := js.KeyValue(ctx, natsjs.DefaultIndexBucket)
	if err != nil {
		b.Fatal(err)
	}
	// The index bucket counted too: its writes are the store's. The
	// bucket has one replica: the store pipelines, as OpenStore sets it.
	store, err := natsjs.NewStore(kv, natsjs.WithIndex(&countingKV{KeyValue: idx, written: kv.written}),
		natsjs.WithPipeline(&countingJS{JetStream: js, prefix: "$KV." + natsjs.DefaultBucket + ".", written: kv.written}))
	if err != nil {
		b.Fatal(err)
	}
	return stateEnv{raw: raw, kv: kv, store: &countingStore{Store: store}}
}

// benchTask is a deliberation of n agents, 1 round, 1 peer. MaxTokens 400
// leaves room for the ~1.4 KB (~350 tokens) proposals of counciltest and
// keeps 81 agents under council's size estimate.
func benchTask(n int) council.Task {
	t := counciltest.Task()
	roles := []string{"ARCHITECT", "QA", "DEVOPS", "DEV", "DATA"}
	t.Agents = make([]council.Agent, n)
	for i := range t.Agents {
		t.Agents[i] = council.Agent{ID: fmt.Sprintf("agent-%03d", i), Role: roles[i%len(roles)]}
	}
	t.Constraints.Rounds, t.Constraints.Peers, t.Constraints.MaxTokens = 1, 1, 400
	return t
}

// step is one result, ready to be recorded.
type step struct {
	key      string
	proposal *council.Proposal
	critique *council.Critique
}

func (s step) record(d *council.Deliberation) (bool, error) {
	if s.proposal != nil {
		return d.RecordProposal(s.key, *s.proposal, stateBenchNow())
	}
	return d.RecordCritique(s.key, *s.critique, stateBenchNow())
}

// plan is every result of a deliberation of a task, in waves: a wave is the
// work pending when the previous wave was answered (a stage's proposals, or
// its critiques). The results are those of counciltest.ProposalFor and
// CritiqueFor; they depend on the work key and attempt only, so one plan
// serves every deliberation of the task, whatever its id.
type plan struct {
	waves [][]step
	steps int
	// resultBytes is the size of the results as they arrive: the sum of
	// the JSON data of the proposal.generated and critique.completed
	// events that carry them (len(events.NewProposalGenerated(…).Data),
	// len(events.NewCritiqueCompleted(…).Data)).
	resultBytes int
}

// newPlan answers, in memory, a deliberation of task with id (ids of the
// same length as the benchmark's, so that the event data has their size).
func newPlan(b *testing.B, id string, task council.Task) plan {
	b.Helper()
	d, err := council.New(id, task, stateBenchT0)
	if err != nil {
		b.Fatal(err)
	}
	var p plan
	for !d.Status.Terminal() {
		pending := d.Pending()
		if len(pending) == 0 {
			b.Fatalf("plan: deliberation waits in stage %d %s with no pending work", d.Stage, d.Phase)
		}
		var wave []step
		for _, w := range pending {
			switch w.Kind {
			case council.WorkProposal:
				r, err := d.ProposalRequest(w.Key)
				if err != nil {
					b.Fatal(err)
				}
				pr := counciltest.ProposalFor(*w)
				pr.Role = r.Agent.Role
				p.resultBytes += len(events.NewProposalGenerated("council.dev/generate", r, pr, stateBenchT0).Data)
				wave = append(wave, step{key: w.Key, proposal: &pr})
			case council.WorkCritique:
				r, err := d.CritiqueRequest(w.Key)
				if err != nil {
					b.Fatal(err)
				}
				c := counciltest.CritiqueFor(*w, d.Task.Constraints.Rubric)
				p.resultBytes += len(events.NewCritiqueCompleted("council.dev/critique", r, c, stateBenchT0).Data)
				wave = append(wave, step{key: w.Key, critique: &c})
			}
		}
		for _, s := range wave {
			if _, err := s.record(d); err != nil {
				b.Fatal(err)
			}
		}
		p.waves = append(p.waves, wave)
		p.steps += len(wave)
	}
	if d.Status != council.StatusCompleted {
		b.Fatalf("plan: deliberation ended %s (%s), want completed", d.Status, d.Reason)
	}
	return p
}

// BenchmarkDeliberationState runs whole deliberations through execute's
// state path over JetStream KV, one per op: council.New, store.Create and
// the outbox flush of the request, then every result recorded through
// Outbox.Apply as execute records an event (Get, transition, Update with
// compare-and-set, emit, clear the outbox), until the deliberation
// completes. Metrics:
//
//   - transitions/op: results recorded per deliberation (Apply calls).
//   - B-written/op: bytes (key + value) the store sends to the bucket in
//     write calls per deliberation, counted by a decorator of the
//     jetstream.KeyValue; writes NATS rejects (a lost compare-and-set, a
//     Create of a key that exists) count too: they cross the wire.
//   - written/result: those bytes ÷ the bytes of the results, where a
//     result's bytes are the JSON data of the event that carries it
//     (proposal.generated, critique.completed); see plan.resultBytes.
//   - transition/put: mean time of one Apply ÷ mean time of one raw kv.Put
//     of a value of the mean result size into another key of the same
//     bucket; as many puts as transitions, in the same op, timer stopped.
//   - B-emitted/op: bytes of the data of the events execute emits per
//     deliberation (the work requests and the end): its broker traffic.
//   - cas-retries/transition (concurrent only): compare-and-sets lost
//     (the store's Update answered council.ErrConflict), per transition.
//
// agents=16/concurrent=8 applies the results of each wave from 8
// goroutines at once; its Apply time is the latency of each call, lost
// compare-and-sets included. A call that gives up (too many lost
// compare-and-sets, council.ErrUnavailable) is made again, as the broker
// would deliver the event again, and counted in redelivered/op.
func BenchmarkDeliberationState(b *testing.B) {
	for _, n := range []int{3, 16, 81} {
		b.Run(fmt.Sprintf("agents=%d", n), func(b *testing.B) { benchDeliberationState(b, n, 1) })
	}
	b.Run("agents=16/concurrent=8", func(b *testing.B) { benchDeliberationState(b, 16, 8) })
	b.Run("agents=81/concurrent=8", func(b *testing.B) { benchDeliberationState(b, 81, 8) })
}

func benchDeliberationState(b *testing.B, agents, workers int) {
	env := newStateEnv(b)
	ctx := context.Background()
	task := benchTask(agents)
	idOf := func(i int) string { return fmt.Sprintf("dlb-state-%03d-%d-%06d", agents, workers, i) }
	p := newPlan(b, idOf(0), task)
	putValue := bytes.Repeat([]byte("x"), p.resultBytes/p.steps)
	b.Logf("%d results of %d B in all (mean %d B) per deliberation", p.steps, p.resultBytes, len(putValue))
	const putKey = "bench-raw-put"

	var (
		ops, written, conflicts int64
		brokerBytes             int64
		redelivered             atomic.Int64
		applyTime, putTime      time.Duration
		mu                      sync.Mutex
	)
	apply := func(ob *execute.Outbox, id string, s step) {
		for range 10 {
			start := time.Now()
			_, err := ob.Apply(ctx, id, s.record)
			took := time.Since(start)
			mu.Lock()
			applyTime += took
			mu.Unlock()
			if errors.Is(err, council.ErrUnavailable) && workers > 1 {
				redelivered.Add(1)
				continue
			}
			if err != nil {
				b.Error(err)
			}
			return
		}
		b.Errorf("%s %s: gave up after 10 deliveries", id, s.key)
	}
	for b.Loop() {
		ops++
		id := idOf(int(ops))
		em := &counciltest.Emitter{}
		ob, err := execute.NewOutbox(env.store, em, stateBenchSource, stateBenchNow, nil)
		if err != nil {
			b.Fatal(err)
		}
		w0, c0 := env.kv.written.Load(), env.store.conflict.Load()

		d, err := council.New(id, task, stateBenchNow())
		if err != nil {
			b.Fatal(err)
		}
		rev, err := env.store.Create(ctx, d)
		if err != nil {
			b.Fatal(err)
		}
		if err := ob.Flush(ctx, d, rev); err != nil {
			b.Fatal(err)
		}
		for _, wave := range p.waves {
			if workers == 1 {
				for _, s := range wave {
					apply(ob, id, s)
				}
				continue
			}
			next := make(chan step)
			var wg sync.WaitGroup
			for range workers {
				wg.Go(func() {
					for s := range next {
						apply(ob, id, s)
					}
				})
			}
			for _, s := range wave {
				next <- s
			}
			close(next)
			wg.Wait()
		}
		written += env.kv.written.Load() - w0
		conflicts += env.store.conflict.Load() - c0

		b.StopTimer()
		for range p.steps {
			start := time.Now()
			if _, err := env.raw.Put(ctx, putKey, putValue); err != nil {
				b.Fatal(err)
			}
			putTime += time.Since(start)
		}
		end, _, err := env.store.Get(ctx, id)
		if err != nil {
			b.Fatal(err)
		}
		if end.Status != council.StatusCompleted || len(end.Outbox) != 0 {
			b.Fatalf("%s: status %s, outbox %v after every result; want completed, empty", id, end.Status, end.Outbox)
		}
		if types := em.Types(); len(types) == 0 || types[len(types)-1] != events.TypeDeliberationCompleted {
			b.Fatalf("%s: last event emitted is not %s", id, events.TypeDeliberationCompleted)
		}
		for _, e := range em.Sent() {
			brokerBytes += int64(len(e.Data))
		}
		b.StartTimer()
	}
	transitions := ops * int64(p.steps)
	b.ReportMetric(float64(p.steps), "transitions/op")
	b.ReportMetric(float64(written)/float64(ops), "B-written/op")
	b.ReportMetric(float64(brokerBytes)/float64(ops), "B-emitted/op") // data of the events execute sends
	b.ReportMetric(float64(written)/float64(ops*int64(p.resultBytes)), "written/result")
	b.ReportMetric(float64(applyTime)/float64(putTime), "transition/put") // as many puts as transitions
	if workers > 1 {
		b.ReportMetric(float64(conflicts)/float64(transitions), "cas-retries/transition")
		b.ReportMetric(float64(redelivered.Load())/float64(ops), "redelivered/op")
	}
}

const (
	sweepStored  = 10000
	sweepRunning = 10
)

// populate fills the store of env with stored deliberations of
// counciltest.Task (3 agents, 1 round), as execute leaves them: running of
// them in stage 0 waiting for their critiques (proposals recorded, outbox
// sent), the others completed by counciltest.Finish (6 proposals, 6
// critiques, about 30 KB each), the completed event sent and the end
// counted in the store's tally (Store.CountEnd, as Outbox.Flush does).
// Nothing in them is due at stateBenchT0, so a sweep changes nothing and
// every op finds the same store. Creates run on 8 goroutines and the ends
// are counted by one more (the tally is one compare-and-set key).
func populate(b *testing.B, env stateEnv, stored, running int) {
	b.Helper()
	ctx := context.Background()
	start := time.Now()
	finished := func() *council.Deliberation {
		d, err := council.New("dlb-populate", counciltest.Task(), stateBenchT0)
		if err != nil {
			b.Fatal(err)
		}
		if err := counciltest.Finish(d, stateBenchT0); err != nil {
			b.Fatal(err)
		}
		d.Acknowledge(council.OutboxCompleted)
		if d.Status != council.StatusCompleted || len(d.Outbox) != 0 {
			b.Fatalf("finished deliberation: status %s, outbox %v", d.Status, d.Outbox)
		}
		return d
	}
	idOf := func(i int) string { return fmt.Sprintf("dlb-stored-%06d", i) }
	ids := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		done := finished() // one each: the id changes per Create
		wg.Go(func() {
			for i := range ids {
				d := done
				if i < running {
					var err error
					if d, err = runningDeliberation(); err != nil {
						b.Error(err)
						continue
					}
				}
				d.ID = idOf(i)
				if _, err := env.store.Create(ctx, d); err != nil {
					b.Error(err)
				}
			}
		})
	}
	tallied := finished()
	wg.Go(func() {
		for i := running; i < stored; i++ {
			tallied.ID = idOf(i)
			if err := env.store.CountEnd(ctx, tallied); err != nil {
				b.Error(err)
				return
			}
		}
	})
	for i := range stored {
		ids <- i
	}
	close(ids)
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	b.Logf("populated %d deliberations (%d running) in %s", stored, running, time.Since(start).Round(time.Millisecond))
}

// runningDeliberation is a 3-agent deliberation with its proposals
// recorded and its critique requests sent.
func runningDeliberation() (*council.Deliberation, error) {
	d, err := council.New("dlb-running", counciltest.Task(), stateBenchT0)
	if err != nil {
		return nil, err
	}
	for _, w := range d.Pending() {
		if _, err := d.RecordProposal(w.Key, counciltest.ProposalFor(*w), stateBenchT0); err != nil {
			return nil, err
		}
	}
	d.Outbox = nil // sent
	if d.Status.Terminal() || len(d.Pending()) == 0 {
		return nil, fmt.Errorf("running deliberation: status %s with %d pending", d.Status, len(d.Pending()))
	}
	return d, nil
}

var sweepName = fmt.Sprintf("stored=%d/running=%d", sweepStored, sweepRunning)

// BenchmarkSweep is one sweep (Function.Sweep: what a sweep.tick costs
// execute) over a bucket of 10,000 deliberations, 10 of them running.
// Population is outside the timer. B-written/op is what the sweep writes
// to the bucket (nothing is due, so ideally nothing).
func BenchmarkSweep(b *testing.B) {
	b.Run(sweepName, func(b *testing.B) {
		env := newStateEnv(b)
		populate(b, env, sweepStored, sweepRunning)
		em := &counciltest.Emitter{}
		f, err := execute.New(env.store, em, execute.WithClock(stateBenchNow))
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		w0 := env.kv.written.Load()
		for b.Loop() {
			if err := f.Sweep(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(env.kv.written.Load()-w0)/float64(b.N), "B-written/op")
		if n := len(em.Sent()); n != 0 {
			b.Errorf("the sweep emitted %d events; want none (nothing is due)", n)
		}
	})
}

// BenchmarkSweepBaseline lists the keys of the same bucket once
// (kv.ListKeys, drained): the least a sweep over every stored key reads.
// keys/op is how many keys the bucket holds (the store may keep more than
// one per deliberation).
func BenchmarkSweepBaseline(b *testing.B) {
	b.Run(sweepName, func(b *testing.B) {
		env := newStateEnv(b)
		populate(b, env, sweepStored, sweepRunning)
		ctx := context.Background()
		keys := 0
		for b.Loop() {
			l, err := env.raw.ListKeys(ctx)
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for range l.Keys() {
				n++
			}
			if n < sweepStored {
				b.Fatalf("listed %d keys, want at least %d", n, sweepStored)
			}
			keys = n
		}
		b.ReportMetric(float64(keys), "keys/op")
	})
}

// BenchmarkStatus is one Function.Status (what GET /status answers: the
// store probe and the statistics of every stored deliberation) over the
// same 10,000 deliberations.
func BenchmarkStatus(b *testing.B) {
	b.Run(fmt.Sprintf("stored=%d", sweepStored), func(b *testing.B) {
		env := newStateEnv(b)
		populate(b, env, sweepStored, sweepRunning)
		f, err := execute.New(env.store, &counciltest.Emitter{}, execute.WithClock(stateBenchNow))
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		for b.Loop() {
			st := f.Status(ctx)
			if st.Status != execute.Healthy || st.Stats == nil || st.Stats.Total != sweepStored {
				b.Fatalf("status %s, stats %+v; want healthy with %d deliberations", st.Status, st.Stats, sweepStored)
			}
		}
	})
}
