package council_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// engineDeliberation starts a deliberation on the real clock: the engine
// enforces the deadline with a context deadline.
func engineDeliberation(t *testing.T, task council.Task) *council.Deliberation {
	t.Helper()
	d, err := council.New("dlb-engine", task, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// settleGoroutines waits until the number of goroutines is back to at most
// n, and fails if it is not: an engine run must not leave calls behind.
func settleGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines outlive the run (had %d):\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestEngineRunCompletes(t *testing.T) {
	before := runtime.NumGoroutine()
	llm := &counciltest.Completer{}
	sink := &counciltest.TokenSink{}
	var changes atomic.Int32
	e := &council.Engine{LLM: llm, Tokens: sink, OnChange: func(_ context.Context, d *council.Deliberation) error {
		changes.Add(1)
		return nil
	}}
	d := engineDeliberation(t, counciltest.Task())
	if err := e.Run(ctx, d); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if d.Status != council.StatusCompleted {
		t.Fatalf("status = %s (reason %q), want completed", d.Status, d.Reason)
	}
	r := d.Result
	if len(r.Ranking) != 3 || len(r.Failures) != 0 {
		t.Fatalf("ranking %d, failures %v; want 3 ranked, no failure", len(r.Ranking), r.Failures)
	}
	for i, rk := range r.Ranking {
		if rk.Rank != i+1 || !rk.Scored || rk.Proposal.Stage != 1 || rk.Score != 0.7 {
			t.Errorf("ranked %d = rank %d scored %v stage %d score %v; want a scored stage-1 revision at 0.7", i, rk.Rank, rk.Scored, rk.Proposal.Stage, rk.Score)
		}
	}
	if r.Winner != archi {
		t.Errorf("winner = %s, want %s (all tie: task order)", r.Winner, archi)
	}
	if n := len(llm.Requests()); n != 15 {
		t.Errorf("%d LLM calls, want 15 (3 proposals, 3 ring critiques, 3 revisions, 6 critiques of the final review by all pairs)", n)
	}
	if got := int(changes.Load()); got != 15 {
		t.Errorf("OnChange called %d times, want once per result (15)", got)
	}
	finals := 0
	for _, c := range sink.Chunks() {
		if c.Final {
			finals++
		}
	}
	if finals != 6 {
		t.Errorf("%d final token chunks, want one per proposal (6)", finals)
	}
	if diff := r.Usage; diff.TotalTokens != 15*15 {
		t.Errorf("usage = %+v, want 15 calls of 15 tokens", r.Usage)
	}
	// Each answer says when its call started: after its work was requested.
	for k, p := range d.Proposals {
		if w := d.Work[k]; p.StartedAt.IsZero() || (w != nil && p.StartedAt.Before(w.RequestedAt)) {
			t.Errorf("proposal %s started at %v, want a time after its request", k, p.StartedAt)
		}
	}
	for k, c := range d.Critiques {
		if w := d.Work[k]; c.StartedAt.IsZero() || (w != nil && c.StartedAt.Before(w.RequestedAt)) {
			t.Errorf("critique %s started at %v, want a time after its request", k, c.StartedAt)
		}
	}
	settleGoroutines(t, before)
}

func TestEngineRunAgentFailsAlways(t *testing.T) {
	task := counciltest.Task() // max_retries 1
	task.Agents[1].Model = "broken"
	var brokenCalls atomic.Int32
	llm := &counciltest.Completer{CompleteFunc: func(_ context.Context, req council.CompletionRequest) (council.Completion, error) {
		if req.Model == "broken" {
			brokenCalls.Add(1)
			return council.Completion{}, council.Unavailablef("HTTP 503")
		}
		return counciltest.Answer(req), nil
	}}
	d := engineDeliberation(t, task)
	if err := (&council.Engine{LLM: llm}).Run(ctx, d); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if d.Status != council.StatusCompleted || len(d.Result.Ranking) != 2 {
		t.Fatalf("status %s, result %+v; want completed with 2 ranked", d.Status, d.Result)
	}
	if len(d.Result.Failures) != 1 || d.Result.Failures[0].AgentID != qa || !strings.Contains(d.Result.Failures[0].Reason, "after 2 attempt(s)") {
		t.Errorf("failures = %+v, want qa failed after 2 attempts", d.Result.Failures)
	}
	if got := brokenCalls.Load(); got != 2 {
		t.Errorf("broken agent called %d times, want 2 (1 + max_retries 1)", got)
	}
	for _, rk := range d.Result.Ranking {
		if rk.Proposal.AgentID == qa {
			t.Errorf("failed agent %s is ranked", qa)
		}
	}
}

func TestEngineRunPermanentErrorIsNotRetried(t *testing.T) {
	task := counciltest.Task()
	task.Constraints.MaxRetries = 5
	var calls atomic.Int32
	llm := &counciltest.Completer{CompleteFunc: func(context.Context, council.CompletionRequest) (council.Completion, error) {
		calls.Add(1)
		return council.Completion{}, council.Invalidf("model not allowed")
	}}
	d := engineDeliberation(t, task)
	if err := (&council.Engine{LLM: llm}).Run(ctx, d); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if d.Status != council.StatusFailed || !strings.HasPrefix(d.Reason, "all agents failed: ") {
		t.Errorf("status %s reason %q; want failed, all agents failed", d.Status, d.Reason)
	}
	if got := calls.Load(); got != 3 {
		t.Errorf("%d calls, want 3 (a permanent error is never retried)", got)
	}
}

func TestEngineRunTimeout(t *testing.T) {
	for _, retries := range []int{0, 2} {
		t.Run(map[int]string{0: "no retries", 2: "retries"}[retries], func(t *testing.T) {
			before := runtime.NumGoroutine()
			task := counciltest.Task()
			task.Constraints.Timeout = 200 * time.Millisecond
			task.Constraints.MaxRetries = retries
			llm := &counciltest.Completer{CompleteFunc: func(ctx context.Context, _ council.CompletionRequest) (council.Completion, error) {
				<-ctx.Done()
				return council.Completion{}, ctx.Err()
			}}
			var last *council.Deliberation
			e := &council.Engine{LLM: llm, OnChange: func(_ context.Context, d *council.Deliberation) error { last = d; return nil }}
			d := engineDeliberation(t, task)
			start := time.Now()
			if err := e.Run(ctx, d); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if d.Status != council.StatusFailed || !strings.HasPrefix(d.Reason, "timeout: ") || !strings.Contains(d.Reason, "0 of 3 calls finished") {
				t.Errorf("status %s reason %q; want failed with the timeout reason", d.Status, d.Reason)
			}
			if len(d.Failures) != 0 {
				t.Errorf("failures = %+v; a timeout is not an agent failure", d.Failures)
			}
			if last != d || last.Status != council.StatusFailed {
				t.Error("OnChange did not see the failed deliberation")
			}
			if el := time.Since(start); el > 2*time.Second {
				t.Errorf("Run took %v with a 200ms timeout", el)
			}
			settleGoroutines(t, before)
		})
	}
}

func TestEngineRunOnChangeErrorStops(t *testing.T) {
	before := runtime.NumGoroutine()
	storeDown := errors.New("store down")
	var calls atomic.Int32
	e := &council.Engine{LLM: &counciltest.Completer{}, OnChange: func(context.Context, *council.Deliberation) error {
		calls.Add(1)
		return storeDown
	}}
	d := engineDeliberation(t, counciltest.Task())
	if err := e.Run(ctx, d); !errors.Is(err, storeDown) {
		t.Fatalf("Run error = %v, want the OnChange error", err)
	}
	if calls.Load() != 1 {
		t.Errorf("OnChange called %d times after failing, want 1", calls.Load())
	}
	if d.Status.Terminal() {
		t.Errorf("status = %s, want the run stopped while running", d.Status)
	}
	settleGoroutines(t, before)
}

func TestEngineRunCancelled(t *testing.T) {
	before := runtime.NumGoroutine()
	cctx, cancel := context.WithCancel(ctx)
	started := make(chan struct{}, 3)
	llm := &counciltest.Completer{CompleteFunc: func(ctx context.Context, _ council.CompletionRequest) (council.Completion, error) {
		started <- struct{}{}
		<-ctx.Done()
		return council.Completion{}, ctx.Err()
	}}
	go func() {
		for range 3 {
			<-started
		}
		cancel()
	}()
	d := engineDeliberation(t, counciltest.Task())
	if err := (&council.Engine{LLM: llm}).Run(cctx, d); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run error = %v, want context.Canceled", err)
	}
	if d.Status.Terminal() {
		t.Errorf("status = %s; a cancelled run leaves the deliberation to be resumed", d.Status)
	}
	settleGoroutines(t, before)
}

func TestEngineRunNothingToDo(t *testing.T) {
	task := counciltest.Task()
	task.Backend = council.BackendRay
	d := engineDeliberation(t, task)
	if err := (&council.Engine{LLM: &counciltest.Completer{}}).Run(ctx, d); err == nil || !strings.Contains(err.Error(), "stuck") {
		t.Errorf("Run(no work) error = %v, want a stuck error", err)
	}
	d.Fail("ray job failed", time.Now())
	if err := (&council.Engine{LLM: &counciltest.Completer{}}).Run(ctx, d); err != nil {
		t.Errorf("Run(ended deliberation) error = %v, want nil", err)
	}
}

func TestEngineRunSinglePass(t *testing.T) {
	llm := &counciltest.Completer{}
	d := engineDeliberation(t, taskOf(council.KindTaskExtraction))
	if err := (&council.Engine{LLM: llm, Now: time.Now}).Run(ctx, d); err != nil {
		t.Fatal(err)
	}
	if d.Status != council.StatusCompleted || d.Result.Ranking[0].Proposal.Content != `{"tasks": []}` {
		t.Errorf("status %s result %+v; want completed with the structured answer", d.Status, d.Result)
	}
	if n := len(llm.Requests()); n != 1 || llm.Requests()[0].Schema == nil {
		t.Errorf("%d calls; want one structured call", n)
	}
}

func TestEngineRunResultsRacingTheDeadlineAreNotApplied(t *testing.T) {
	// One agent answers at once; persisting that answer takes longer than
	// the deadline, while the other calls end with the deadline's error. The
	// deliberation times out: the calls the deadline cut off are not agent
	// failures, and it does not complete with the one early answer.
	for range 5 {
		task := counciltest.Task()
		task.Constraints.Timeout = 100 * time.Millisecond
		task.Constraints.MaxRetries = 0
		task.Agents[0].Model = "fast"
		llm := &counciltest.Completer{CompleteFunc: func(ctx context.Context, req council.CompletionRequest) (council.Completion, error) {
			if req.Model == "fast" {
				return counciltest.Answer(req), nil
			}
			<-ctx.Done()
			return council.Completion{}, ctx.Err()
		}}
		var calls atomic.Int32
		e := &council.Engine{LLM: llm, OnChange: func(context.Context, *council.Deliberation) error {
			if calls.Add(1) == 1 {
				time.Sleep(300 * time.Millisecond)
			}
			return nil
		}}
		d := engineDeliberation(t, task)
		if err := e.Run(ctx, d); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if d.Status != council.StatusFailed || !strings.HasPrefix(d.Reason, "timeout: ") || len(d.Failures) != 0 {
			t.Fatalf("status %s reason %q failures %+v; want a timeout with no agent failure", d.Status, d.Reason, d.Failures)
		}
	}
}
