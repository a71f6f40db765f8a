package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"council.dev/events"
	"council.dev/functions/generate"
	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/adapters/natsjs/natstest"
	"council.dev/shared/adapters/vllm"
	"council.dev/shared/council"
)

// instantLLM is an OpenAI-compatible streaming endpoint that costs next to
// nothing — a benchmark tool, never a stand-in for the real server in a
// test: its answer, streamPieces chunks of a few bytes, is encoded once. With
// hold set, each call stops before its last chunk until release is closed
// (to count what an event holds while in flight).
type instantLLM struct {
	body    [][]byte
	hold    bool
	held    atomic.Int64
	release chan struct{}
}

const streamPieces = 64

func newInstantLLM(b *testing.B, hold bool) (*instantLLM, string) {
	b.Helper()
	l := &instantLLM{hold: hold, release: make(chan struct{})}
	chunk := func(v map[string]any) []byte {
		v["id"], v["object"], v["model"] = "x", "chat.completion.chunk", "council-tiny"
		j, _ := json.Marshal(v)
		return []byte("data: " + string(j) + "\n\n")
	}
	for i := range streamPieces {
		l.body = append(l.body, chunk(map[string]any{"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"content": fmt.Sprintf("word%02d ", i)}}}}))
	}
	l.body = append(l.body,
		chunk(map[string]any{"choices": []any{map[string]any{"index": 0, "delta": map[string]any{}, "finish_reason": "stop"}}}),
		append(chunk(map[string]any{"choices": []any{}, "usage": map[string]any{"prompt_tokens": 200, "completion_tokens": streamPieces, "total_tokens": 200 + streamPieces}}),
			"data: [DONE]\n\n"...))
	srv := httptest.NewServer(l)
	b.Cleanup(srv.Close)
	return l, srv.URL + "/v1"
}

func (l *instantLLM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "text/event-stream")
	rc := http.NewResponseController(w)
	last := len(l.body) - 1
	for _, c := range l.body[:last] {
		_, _ = w.Write(c)
		_ = rc.Flush()
	}
	if l.hold {
		l.held.Add(1)
		<-l.release
	}
	_, _ = w.Write(l.body[last])
}

// streamCase is one way of answering a proposal.requested event.
type streamCase struct {
	name string
	// handle answers one event; setup returns it.
	setup func(b *testing.B, llmURL string) func(ctx context.Context, e event.Event) error
}

func streamCases() []streamCase {
	client := func(b *testing.B, url string) *vllm.Client {
		c, err := vllm.New(url, "council-tiny", vllm.WithRetries(0), vllm.WithMaxConns(256))
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	viaGenerate := func(opts ...natsjs.Option) func(b *testing.B, url string) func(context.Context, event.Event) error {
		return func(b *testing.B, url string) func(context.Context, event.Event) error {
			_, nc, js := natstest.Start(b)
			if err := natsjs.Setup(b.Context(), js, natsjs.Topology{}); err != nil {
				b.Fatal(err)
			}
			pub, err := natsjs.NewTokenPublisher(nc, opts...)
			if err != nil {
				b.Fatal(err)
			}
			fn, err := generate.New(client(b, url), generate.WithTokenSink(pub))
			if err != nil {
				b.Fatal(err)
			}
			return func(ctx context.Context, e event.Event) error {
				out, err := fn.Handle(ctx, e)
				if err == nil && out.Type() != events.TypeProposalGenerated {
					err = fmt.Errorf("answered %s", out.Type())
				}
				return err
			}
		}
	}
	return []streamCase{
		// The baseline: what a plain Go server does for the same request,
		// the proposal's prompt and one streamed call, tokens dropped.
		{"direct", func(b *testing.B, url string) func(context.Context, event.Event) error {
			llm := client(b, url)
			return func(ctx context.Context, e event.Event) error {
				req, err := events.DecodeProposalRequested(e)
				if err != nil {
					return err
				}
				_, err = council.Generate(ctx, llm, req, func(string) {})
				return err
			}
		}},
		{"generate-per-piece", viaGenerate(natsjs.WithCoalescing(0, 0))},
		{"generate-coalesced", viaGenerate()},
	}
}

func proposalEvent(b *testing.B) event.Event {
	b.Helper()
	e, err := events.LoadFixture("proposal.requested.v1/valid/stage0.json")
	if err != nil {
		b.Fatal(err)
	}
	return e
}

// BenchmarkStreamedProposal: proposal.requested events answered as fast
// as an instant LLM streams 64 pieces, 8 at a time per core: directly (the
// baseline), through generate publishing a token message per piece, and
// through generate coalescing them (50 ms / 1 KiB). events/s is the
// throughput; compare each generate case with direct.
func BenchmarkStreamedProposal(b *testing.B) {
	for _, c := range streamCases() {
		b.Run(c.name, func(b *testing.B) {
			_, url := newInstantLLM(b, false)
			handle := c.setup(b, url)
			e := proposalEvent(b)
			b.SetParallelism(8)
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := handle(context.Background(), e); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			// The process's CPU time (the instant LLM's included, the same
			// in every case): less sensitive than events/s to the other
			// loads of a shared machine.
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/event")
		})
	}
}

// BenchmarkInFlightMemory: what one event in flight holds — live heap and
// goroutine stacks, after a GC — with 64 events waiting on the LLM's last
// chunk at once, each way of answering; compare with direct.
func BenchmarkInFlightMemory(b *testing.B) {
	const inFlight = 64
	for _, c := range streamCases() {
		b.Run(c.name, func(b *testing.B) {
			var total float64
			for range b.N {
				b.StopTimer()
				l, url := newInstantLLM(b, true)
				handle := c.setup(b, url)
				e := proposalEvent(b)
				// Warm the connections and the function once.
				close(l.release)
				if err := handle(context.Background(), e); err != nil {
					b.Fatal(err)
				}
				l.release = make(chan struct{})
				l.held.Store(0)
				before := liveBytes()
				b.StartTimer()
				var wg sync.WaitGroup
				for range inFlight {
					wg.Go(func() {
						if err := handle(context.Background(), e); err != nil {
							b.Error(err)
						}
					})
				}
				for deadline := time.Now().Add(30 * time.Second); l.held.Load() < inFlight; {
					if time.Now().After(deadline) {
						b.Fatalf("%d of %d events in flight after 30s", l.held.Load(), inFlight)
					}
					runtime.Gosched()
				}
				during := liveBytes()
				close(l.release)
				wg.Wait()
				total += float64(during-before) / inFlight
			}
			b.ReportMetric(total/float64(b.N), "B/in-flight-event")
		})
	}
}

// cpuTime is the user and system CPU time of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// liveBytes is the live heap and the goroutine stacks after a GC.
func liveBytes() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc + m.StackInuse)
}
