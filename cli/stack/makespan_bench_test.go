package stack

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"council.dev/events"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// llmLatency is how long every call of the stub LLM takes.
const llmLatency = 200 * time.Millisecond

// sleepyCompleter is a stub LLM: every call waits llmLatency, then answers
// like counciltest's cooperative model (a proposal text, or a critique JSON
// for the critique schema that council's parser accepts). Unlike
// counciltest.Completer it records nothing, so long runs do not grow.
type sleepyCompleter struct{ calls atomic.Int64 }

func (c *sleepyCompleter) Complete(ctx context.Context, req council.CompletionRequest) (council.Completion, error) {
	c.calls.Add(1)
	t := time.NewTimer(llmLatency)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return council.Completion{}, ctx.Err()
	case <-t.C:
	}
	return counciltest.Answer(req), nil
}

// makespanTask is a deliberation of n agents, 1 round, 1 peer, with
// max_tokens small enough that the result-size estimate accepts
// council.MaxAgents agents.
func makespanTask(n int) council.Task {
	t := counciltest.Task()
	roles := []string{"ARCHITECT", "QA", "DEVOPS", "DEV", "DATA"}
	t.Agents = make([]council.Agent, n)
	for i := range t.Agents {
		t.Agents[i] = council.Agent{ID: fmt.Sprintf("agent-%03d", i), Role: roles[i%len(roles)]}
	}
	t.Constraints.Rounds, t.Constraints.Peers, t.Constraints.MaxTokens = 1, 1, 64
	// The ring in the final review too: the benchmark measures how the
	// stack runs a stage's calls at once, with the figures of
	// docs/benchmarks.md, not the review by all pairs (n × (n−1) calls).
	t.Constraints.FinalReview = council.FinalReviewPeers
	t.Constraints.Timeout = 10 * time.Minute
	return t
}

// criticalPath is the makespan of a deliberation of rounds rounds when
// every phase's calls all run at once: (rounds+1) stages of two phases
// (propose or revise, then critique), one LLM call deep each; ranking needs
// no call.
func criticalPath(rounds int) time.Duration {
	return time.Duration(2*(rounds+1)) * llmLatency
}

// BenchmarkMakespan runs whole deliberations through the local stack
// (embedded NATS JetStream, execute, generate and critique as the images
// wire them) over a stub LLM whose every call takes 200 ms, and reports the
// wall time of one deliberation (makespan-s) and its ratio to the critical
// path (makespan/critical; 1 would be perfect parallelism, 0.8 s for one
// round). concurrency=default is the stack's (and council dev's) default
// in-flight bound of generate and critique (Config.Concurrency 0, i.e. 4,
// as Knative's containerConcurrency); the other setting is 2×agents, more
// than any phase's calls.
func BenchmarkMakespan(b *testing.B) {
	for _, n := range []int{3, 9, 16, 81} {
		b.Run("agents="+strconv.Itoa(n), func(b *testing.B) {
			for _, conc := range []int{0, 2 * n} {
				name := "concurrency=default"
				if conc > 0 {
					name = "concurrency=" + strconv.Itoa(conc)
				}
				b.Run(name, func(b *testing.B) { benchMakespan(b, n, conc) })
			}
		})
	}
}

func benchMakespan(b *testing.B, agents, concurrency int) {
	ctx := context.Background()
	llm := &sleepyCompleter{}
	s, err := Start(ctx, Config{Completer: llm, StoreDir: b.TempDir(), Concurrency: concurrency})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()

	seq := 0
	run := func(t council.Task) time.Duration {
		b.Helper()
		seq++
		req := events.NewRequest("council.dev/bench-makespan", "makespan-"+strconv.Itoa(seq), t, time.Now())
		id := council.DeliberationID(req.Source, req.ID)
		actx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		start := time.Now()
		if err := s.Send(actx, req); err != nil {
			b.Fatal(err)
		}
		out, err := s.Await(actx, id)
		took := time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if out.Failed != nil {
			b.Fatalf("deliberation %s failed: %s", id, out.Failed.Reason)
		}
		if got := len(out.Completed.Ranking); got != len(t.Agents) || len(out.Completed.Failures) > 0 {
			b.Fatalf("deliberation %s ranked %d of %d agents, failures %v", id, got, len(t.Agents), out.Completed.Failures)
		}
		return took
	}

	// One small deliberation first, so that the consumers, connections and
	// schema compilers are warm when the timer runs.
	run(makespanTask(3))
	task := makespanTask(agents)
	llm.calls.Store(0)

	var total time.Duration
	ops := 0
	for b.Loop() {
		total += run(task)
		ops++
	}
	if err := s.Err(); err != nil {
		b.Fatal(err)
	}
	// R rounds: agents proposals and agents×peers critiques per stage.
	stages := task.Constraints.Rounds + 1
	if want := int64(ops * stages * agents * (1 + task.Constraints.Peers)); llm.calls.Load() != want {
		b.Errorf("%d LLM calls, want %d", llm.calls.Load(), want)
	}
	mean := total / time.Duration(ops)
	b.ReportMetric(mean.Seconds(), "makespan-s")
	b.ReportMetric(float64(mean)/float64(criticalPath(task.Constraints.Rounds)), "makespan/critical")
}
