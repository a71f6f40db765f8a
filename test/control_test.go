package test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/cli/stack"
	"council.dev/events"
	"council.dev/functions/execute"
	"council.dev/shared/adapters/vllm/vllmtest"
	"council.dev/shared/council"
)

// Control of a running deliberation (issue 12) on the real LLM server,
// NATS JetStream and, for the Ray backend, the real Ray head: budgets,
// cancel, and the review gate across a whole-stack restart.

// withConstraints returns e with its constraints changed by edit and a
// fresh id.
func withConstraints(t *testing.T, e event.Event, edit func(c map[string]any)) event.Event {
	t.Helper()
	var data map[string]any
	if err := json.Unmarshal(e.Data(), &data); err != nil {
		t.Fatal(err)
	}
	edit(data["constraints"].(map[string]any))
	if err := e.SetData(event.ApplicationJSON, data); err != nil {
		t.Fatal(err)
	}
	return e
}

// control publishes a control event (cancel, review decision).
func control(t *testing.T, s *stack.Stack, env council.Envelope) {
	t.Helper()
	send(t, s, events.ToEvent(env))
}

// outcome waits for the end of deliberation id.
func outcome(t *testing.T, s *stack.Stack, id string) stack.Outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	out, err := s.Await(ctx, id)
	if err != nil {
		t.Fatalf("await deliberation %s: %v (stack: %v)", id, err, s.Err())
	}
	return out
}

func terminals(counts map[string]int) int {
	return counts[events.TypeDeliberationCompleted] + counts[events.TypeDeliberationFailed] + counts[events.TypeDeliberationCancelled]
}

// TestBudgetStopsWork: max_calls 8 of a council whose stages cost 6 calls
// each (3 proposals, 3 critiques) ends after stage 0, ranked, and the
// completed event reports what was spent; a token budget that cannot pay
// for the critiques of stage 0 ends it failed, budget_exceeded.
func TestBudgetStopsWork(t *testing.T) {
	s := startStack(t, false)

	id := send(t, s, withConstraints(t, request(t, 32), func(c map[string]any) { c["max_calls"] = 8 }))
	out := outcome(t, s, id)
	calls := countEvents(t, s, id)
	issued := calls[events.TypeProposalRequested] + calls[events.TypeCritiqueRequested]
	switch {
	case out.Completed != nil:
		c := out.Completed
		t.Logf("max_calls 8: completed, stopped %q, %d calls, %d tokens, %d work events on the broker",
			c.Stopped, c.Calls, c.Usage.TotalTokens, issued)
		if c.Stopped != council.ReasonBudgetExceeded || c.Calls > 8 || c.Calls < 6 || c.Usage.TotalTokens == 0 || len(c.Ranking) == 0 {
			t.Errorf("completed: stopped %q, %d calls, %d tokens, %d ranked; want budget_exceeded, 6 to 8 calls, tokens, a ranking",
				c.Stopped, c.Calls, c.Usage.TotalTokens, len(c.Ranking))
		}
		if c.Ranking[0].Proposal.Stage != 0 {
			t.Errorf("ranked stage %d, want 0 (the revision round was never issued)", c.Ranking[0].Proposal.Stage)
		}
		if issued != c.Calls {
			t.Errorf("%d work events on the broker, the completed event reports %d calls", issued, c.Calls)
		}
	case out.Failed != nil:
		// Retries of bad model output (counted as calls) may leave the
		// critiques of stage 0 unpaid: then nothing can be ranked.
		f := out.Failed
		t.Logf("max_calls 8: failed %q, %d calls, %d work events", f.Reason, f.Calls, issued)
		if !strings.HasPrefix(f.Reason, council.ReasonBudgetExceeded) && !strings.HasPrefix(f.Reason, "all agents failed") {
			t.Errorf("failed: %q", f.Reason)
		}
		if f.Calls > 8 || issued != f.Calls {
			t.Errorf("failed after %d calls (%d work events); want at most 8, all on the broker", f.Calls, issued)
		}
	default:
		t.Fatalf("cancelled: %+v", out.Cancelled)
	}
	if calls[events.TypeProposalRequested] > 3+2 {
		t.Errorf("%d proposal requests: the revision round was issued", calls[events.TypeProposalRequested])
	}

	// A token budget that pays for the first proposals (their estimated
	// prompts and 3 × max_tokens 32), not for their critiques on top of
	// what the proposals used.
	req := request(t, 32)
	task, err := events.DecodeRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	budget := 3 * 32
	for _, a := range task.Agents {
		budget += council.EstimateTokens(council.ProposalMessages(council.ProposalRequest{Task: task.For(a), Agent: a}))
	}
	id = send(t, s, withConstraints(t, req, func(c map[string]any) { c["max_total_tokens"] = budget }))
	out = outcome(t, s, id)
	if out.Failed == nil || !strings.HasPrefix(out.Failed.Reason, council.ReasonBudgetExceeded+": the critiques of stage 0") {
		t.Fatalf("max_total_tokens %d: %+v; want failed, budget_exceeded", budget, out)
	}
	calls = countEvents(t, s, id)
	t.Logf("max_total_tokens %d: failed after %d calls, %d tokens spent: %s", budget, out.Failed.Calls, out.Failed.Usage.TotalTokens, out.Failed.Reason)
	if calls[events.TypeCritiqueRequested] != 0 || out.Failed.Calls != calls[events.TypeProposalRequested] || out.Failed.Usage.TotalTokens == 0 {
		t.Errorf("%v; failed reports %d calls, %d tokens", calls, out.Failed.Calls, out.Failed.Usage.TotalTokens)
	}
}

// TestCancelMidRun cancels a deliberation whose calls are running on the
// LLM server, twice: exactly one deliberation.cancelled on the broker
// stream, no completed or failed, and the results that arrive after the
// cancel change nothing.
func TestCancelMidRun(t *testing.T) {
	s := startStack(t, false)
	ctx := context.Background()
	id := send(t, s, request(t, 256))
	eventually(t, 2*time.Minute, "the first proposals requested", func() bool {
		d, _, err := s.Store.Get(ctx, id)
		return err == nil && d.Calls >= 3 && len(d.Outbox) == 0
	})
	d, _, err := s.Store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if d.Status.Terminal() || len(d.Proposals) == 3 {
		t.Fatalf("%s with %d proposals before the cancel: the test proves nothing", d.Status, len(d.Proposals))
	}
	control(t, s, events.NewCancel("test", id+"-cancel-1", id, "the story was dropped", time.Now()))
	control(t, s, events.NewCancel("test", id+"-cancel-2", id, "again", time.Now()))
	out := outcome(t, s, id)
	// execute handles events concurrently: either cancel may be the one
	// applied, the other changes nothing.
	if out.Cancelled == nil || out.Cancelled.Calls != 3 ||
		(out.Cancelled.Reason != "cancelled: the story was dropped" && out.Cancelled.Reason != "cancelled: again") {
		t.Fatalf("outcome %+v; want cancelled with the reason of one of the cancels after 3 calls", out)
	}
	// Wait for every call in flight at the cancel to answer, then count.
	var counts map[string]int
	eventually(t, 3*time.Minute, "the in-flight calls answered", func() bool {
		counts = countEvents(t, s, id)
		return counts[events.TypeProposalGenerated]+counts[events.TypeProposalFailed] >= 3
	})
	t.Logf("events of the cancelled deliberation: %v", counts)
	if counts[events.TypeDeliberationCancelled] != 1 || terminals(counts) != 1 {
		t.Errorf("terminal events %v; want exactly one cancelled", counts)
	}
	if counts[events.TypeCritiqueRequested] != 0 || counts[events.TypeProposalRequested] != 3 {
		t.Errorf("work issued after the cancel: %v", counts)
	}
	// The late results are not recorded: the cancel froze the state.
	after, _, err := s.Store.Get(ctx, id)
	if err != nil || after.Status != council.StatusCancelled || len(after.Proposals) == 3 || len(after.Outbox) != 0 {
		t.Errorf("stored after the late results: %v, %d proposals, outbox %v (%v)", after.Status, len(after.Proposals), after.Outbox, err)
	}
}

// TestCancelStopsTheRayJob cancels a backend ray deliberation while its job
// runs on the real Ray head: Ray reports the job ended (stopped), and the
// broker holds exactly one cancelled event.
func TestCancelStopsTheRayJob(t *testing.T) {
	s := startRayStack(t)
	ctx := context.Background()
	id := send(t, s, onBackend(t, request(t, 256), "ray"))
	sid := execute.SubmissionID(id, 1)
	eventually(t, 3*time.Minute, "job "+sid+" RUNNING on Ray", func() bool {
		info, err := s.Ray.Get(ctx, sid)
		return err == nil && info.State == council.JobRunning
	})
	control(t, s, events.NewCancel("test", id+"-cancel", id, "", time.Now()))
	out := outcome(t, s, id)
	if out.Cancelled == nil || out.Cancelled.Backend != "ray" {
		t.Fatalf("outcome %+v; want cancelled", out)
	}
	var info council.JobInfo
	eventually(t, time.Minute, "job "+sid+" ended on Ray", func() bool {
		var err error
		info, err = s.Ray.Get(ctx, sid)
		return err == nil && info.State.Terminal()
	})
	t.Logf("Ray job %s after the cancel: %s (%s)", sid, info.State, info.Message)
	if info.State != council.JobStopped {
		t.Errorf("job %s: %s, want STOPPED", sid, info.State)
	}
	// execute follows the job to its end, and deletes it; no other attempt.
	var d *council.Deliberation
	eventually(t, time.Minute, "the stopped job recorded and deleted", func() bool {
		var err error
		d, _, err = s.Store.Get(ctx, id)
		return err == nil && d.Job != nil && d.Job.Deleted
	})
	if d.Status != council.StatusCancelled || d.Job.Attempt != 1 {
		t.Errorf("stored %s, job attempt %d", d.Status, d.Job.Attempt)
	}
	if counts := countEvents(t, s, id); counts[events.TypeDeliberationCancelled] != 1 || terminals(counts) != 1 {
		t.Errorf("terminal events %v; want exactly one cancelled", counts)
	}
}

// TestReviewGateSurvivesAWholeStackRestart: a deliberation waiting at its
// review gate survives the whole stack stopping and starting again (it is
// state in the store and the deadline timer), resumes on feedback — one
// more revision round whose requests carry the feedback, its critiques,
// the gate again — and completes on approve.
func TestReviewGateSurvivesAWholeStackRestart(t *testing.T) {
	cfg := stack.Config{
		LLMURL: vllmtest.URL(t), LLMModel: vllmtest.Model(), StoreDir: t.TempDir(),
		LLMTimeout: 2 * time.Minute, SweepEvery: time.Second,
	}
	ctx := context.Background()
	first, err := stack.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	id := send(t, first, withConstraints(t, request(t, 32), func(c map[string]any) {
		c["review"] = "before_final"
		c["timeout_seconds"] = 3600
	}))
	awaitGate := func(s *stack.Stack, round int) *council.Deliberation {
		t.Helper()
		var d *council.Deliberation
		eventually(t, 5*time.Minute, fmt.Sprintf("the review gate, round %d", round), func() bool {
			var err error
			d, _, err = s.Store.Get(ctx, id)
			if err == nil && d.Status.Terminal() {
				t.Fatalf("deliberation ended at %s: %s", d.Status, d.Reason)
			}
			return err == nil && d.AwaitingReview() && d.Review.Round == round && len(d.Outbox) == 0
		})
		return d
	}
	d := awaitGate(first, 1)
	if n := countEvents(t, first, id)[events.TypeReviewRequested]; n != 1 {
		t.Errorf("%d review.requested events at the first gate, want 1", n)
	}
	t.Logf("waiting at the gate (stage %d, %d calls); stopping the whole stack", d.Stage, d.Calls)
	first.Close()

	second, err := stack.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("restart stack on the same storage: %v", err)
	}
	t.Cleanup(second.Close)
	d = awaitGate(second, 1)
	stage := d.Stage
	const feedback = "Name the metric that shows the limiter works."
	control(t, second, events.NewReviewDecided("test", id+"-review-1", id,
		council.ReviewDecision{Round: 1, Decision: council.DecisionFeedback, Feedback: feedback, Reviewer: "test"}, time.Now()))
	d = awaitGate(second, 2)
	if d.Stage != stage+1 || d.FeedbackFor(d.Stage) != feedback {
		t.Errorf("after feedback: stage %d (want %d), feedback %q", d.Stage, stage+1, d.FeedbackFor(d.Stage))
	}
	carried := feedbackRequests(t, second, id)
	if carried != len(d.Task.Agents)-len(d.Failures) || carried == 0 {
		t.Errorf("%d proposal requests carried the feedback, want one per surviving agent", carried)
	}
	control(t, second, events.NewReviewDecided("test", id+"-review-2", id,
		council.ReviewDecision{Decision: council.DecisionApprove, Reviewer: "test"}, time.Now()))
	out := outcome(t, second, id)
	if out.Completed == nil {
		t.Fatalf("outcome %+v; want completed", out)
	}
	if out.Completed.Ranking[0].Proposal.Stage != stage+1 {
		t.Errorf("ranked stage %d, want %d (the feedback round)", out.Completed.Ranking[0].Proposal.Stage, stage+1)
	}
	counts := countEvents(t, second, id)
	t.Logf("review gate: events %v, %d calls, %d tokens", counts, out.Completed.Calls, out.Completed.Usage.TotalTokens)
	if counts[events.TypeReviewRequested] != 2 || counts[events.TypeDeliberationCompleted] != 1 || terminals(counts) != 1 {
		t.Errorf("events %v; want 2 review requests and exactly one completed", counts)
	}
}

// feedbackRequests counts the proposal.requested events of deliberation id
// on the broker stream that carry a reviewer's feedback.
func feedbackRequests(t *testing.T, s *stack.Stack, id string) int {
	t.Helper()
	n := 0
	forEachEvent(t, s, func(e event.Event) {
		if e.Type() != events.TypeProposalRequested {
			return
		}
		r, err := events.DecodeProposalRequested(e)
		if err == nil && r.DeliberationID == id && r.Feedback != "" {
			n++
		}
	})
	return n
}

// forEachEvent calls fn with every event on the broker stream.
func forEachEvent(t *testing.T, s *stack.Stack, fn func(event.Event)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := s.JS.OrderedConsumer(ctx, s.Topology.EventsStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.JS.Stream(ctx, s.Topology.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	for n := uint64(0); n < info.CachedInfo().State.Msgs; n++ {
		msg, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("read broker stream: %v", err)
		}
		if e, err := events.DecodeStructured(msg.Data()); err == nil {
			fn(e)
		}
	}
}
