package council_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// wave sends the outbox and answers each work key in it (proposals, and
// critiques scoring score); it returns the keys sent.
func wave(t *testing.T, d *council.Deliberation, now time.Time, score float64) []string {
	t.Helper()
	keys := send(d)
	for _, k := range keys {
		w, ok := d.Work[k]
		if !ok || w.State != council.WorkPending {
			continue
		}
		switch w.Kind {
		case council.WorkProposal:
			recordProposal(t, d, k, prop(w.AgentID, w.Stage), now)
		default:
			recordCritique(t, d, k, crit(w.AgentID, score), now)
		}
	}
	return keys
}

// run answers waves until d ends or waits at its gate.
func run(t *testing.T, d *council.Deliberation, now time.Time) {
	t.Helper()
	for range 50 {
		if d.Status.Terminal() || d.AwaitingReview() {
			return
		}
		if len(wave(t, d, now, 0.5)) == 0 {
			t.Fatalf("outbox empty while %s in stage %d %s", d.Status, d.Stage, d.Phase)
		}
	}
	t.Fatal("deliberation did not end")
}

func controlTask(mut func(*council.Constraints)) council.Task {
	task := counciltest.Task()
	mut(&task.Constraints)
	return task
}

func TestMaxCallsCompletesWithTheLastCritiquedStage(t *testing.T) {
	// 3 agents, 1 peer: stage 0 is 3 proposals + 3 critiques = 6 calls; the
	// revision round would need 6 more.
	d := newDeliberation(t, controlTask(func(c *council.Constraints) { c.MaxCalls = 8 }))
	run(t, d, at(1))
	if d.Status != council.StatusCompleted {
		t.Fatalf("status %s (%s), want completed", d.Status, d.Reason)
	}
	if d.Result.Stopped != council.ReasonBudgetExceeded || d.Stage != 0 || d.Calls != 6 {
		t.Errorf("stopped %q at stage %d after %d calls; want budget_exceeded at stage 0 after 6", d.Result.Stopped, d.Stage, d.Calls)
	}
	if len(d.Result.Ranking) != 3 || !d.Result.Ranking[0].Scored {
		t.Errorf("ranking %+v: want the 3 critiqued proposals of stage 0", ranks(d.Result))
	}
	if !slices.Equal(d.Outbox, []string{council.OutboxCompleted}) {
		t.Errorf("outbox %v", d.Outbox)
	}
}

func TestMaxCallsEnoughRunsEveryRound(t *testing.T) {
	// 3 agents: stage 0 is 3 proposals + 3 ring critiques; stage 1 is 3
	// revisions + 6 critiques (the final review by all pairs) = 15 calls.
	d := newDeliberation(t, controlTask(func(c *council.Constraints) { c.MaxCalls = 15 }))
	run(t, d, at(1))
	if d.Status != council.StatusCompleted || d.Result == nil || d.Result.Stopped != "" || d.Stage != 1 || d.Calls != 15 {
		t.Fatalf("%s (%s) stage %d calls %d; want completed at stage 1 after 15 calls", d.Status, d.Reason, d.Stage, d.Calls)
	}
}

func TestMaxCallsShortOfTheFinalReviewByAllPairs(t *testing.T) {
	// 14 calls pay for the ring's final review (12) but not for all pairs
	// (15): the rounds stop at stage 0.
	d := newDeliberation(t, controlTask(func(c *council.Constraints) { c.MaxCalls = 14 }))
	run(t, d, at(1))
	if d.Status != council.StatusCompleted || d.Result.Stopped != council.ReasonBudgetExceeded || d.Stage != 0 {
		t.Fatalf("%s (%s) stage %d; want completed, budget_exceeded, at stage 0", d.Status, d.Reason, d.Stage)
	}
}

func TestBudgetThatCannotPayTheFirstCritiquesFails(t *testing.T) {
	d := newDeliberation(t, controlTask(func(c *council.Constraints) { c.MaxCalls = 5 }))
	run(t, d, at(1))
	if d.Status != council.StatusFailed || !strings.HasPrefix(d.Reason, council.ReasonBudgetExceeded+":") {
		t.Fatalf("%s %q; want failed budget_exceeded", d.Status, d.Reason)
	}
	if d.Calls != 3 || len(d.Pending()) != 0 {
		t.Errorf("calls %d, pending %d; want 3 and none", d.Calls, len(d.Pending()))
	}
}

// estimates returns the estimated prompt tokens of the first proposals of
// task and of the critiques of stage 0 (ring order, one peer), as the
// deliberation counts them.
func estimates(task council.Task) (proposals, critiques int) {
	task = task.WithDefaults()
	for i, a := range task.Agents {
		proposals += council.EstimateTokens(council.ProposalMessages(council.ProposalRequest{Task: task.For(a), Agent: a}))
		reviewer := task.Agents[(i+1)%len(task.Agents)]
		critiques += council.EstimateTokens(council.CritiqueMessages(council.CritiqueRequest{
			Task: task.For(reviewer), Reviewer: reviewer, Proposal: prop(a.ID, 0)}))
	}
	return proposals, critiques
}

func TestTokenBudget(t *testing.T) {
	// Recorded usage: proposals 3 tokens each (usageP), critiques 30; the
	// next calls count their estimated prompts plus max_tokens (100) each.
	p0, c0 := estimates(controlTask(func(c *council.Constraints) { c.MaxTokens = 100 }))
	if c0+309 < p0+300 {
		t.Fatalf("estimates: first proposals %d, their critiques %d: the budgets below do not apply", p0, c0)
	}
	// Enough for stage 0 and its critiques (9 + c0 + 300), not for the
	// revision round.
	budget := c0 + 309
	d := newDeliberation(t, controlTask(func(c *council.Constraints) { c.MaxTokens = 100; c.MaxTotalTokens = budget }))
	run(t, d, at(1))
	if d.Status != council.StatusCompleted || d.Result.Stopped != council.ReasonBudgetExceeded || d.Stage != 0 {
		t.Fatalf("%s %q stopped %v at stage %d; want completed, budget_exceeded, stage 0", d.Status, d.Reason, d.Result, d.Stage)
	}
	if got := d.Spent().TotalTokens; got != 3*usageP.TotalTokens+3*usageC.TotalTokens {
		t.Errorf("spent %d", got)
	}
	// One token less: the critiques of stage 0 cannot be paid.
	d = newDeliberation(t, controlTask(func(c *council.Constraints) { c.MaxTokens = 100; c.MaxTotalTokens = budget - 1 }))
	run(t, d, at(1))
	if d.Status != council.StatusFailed || !strings.Contains(d.Reason, fmt.Sprintf("max_total_tokens=%d", budget-1)) {
		t.Fatalf("%s %q; want failed naming max_total_tokens", d.Status, d.Reason)
	}
	if council.EstimateTokens([]council.Message{{Content: "12345"}}) != 2 {
		t.Error("EstimateTokens: 5 bytes are 2 tokens")
	}
}

func TestARetryTheBudgetCannotPayFailsTheAgent(t *testing.T) {
	d := newDeliberation(t, controlTask(func(c *council.Constraints) { c.MaxCalls = 3; c.MaxRetries = 2 }))
	send(d)
	key := council.ProposalKey(0, qa)
	recordFailure(t, d, key, 1, "server busy", true, at(1))
	if d.Calls != 3 || d.Work[key].State != council.WorkFailed || !d.Failed(qa) {
		t.Fatalf("calls %d, work %s, failed %v; want the agent failed without a retry", d.Calls, d.Work[key].State, d.Failed(qa))
	}
	if !strings.Contains(d.Failures[0].Reason, "not retried: would need 1 more call(s)") {
		t.Errorf("reason %q", d.Failures[0].Reason)
	}
	// Without a budget the same failure is retried and counted.
	d = newDeliberation(t, controlTask(func(c *council.Constraints) { c.MaxRetries = 2 }))
	send(d)
	recordFailure(t, d, key, 1, "server busy", true, at(1))
	if d.Calls != 4 || d.Work[key].Attempt != 2 {
		t.Errorf("calls %d attempt %d; want 4 and 2", d.Calls, d.Work[key].Attempt)
	}
}

func TestBudgetValidation(t *testing.T) {
	for name, c := range map[string]struct {
		mut  func(*council.Constraints)
		task func(*council.Task)
		want string
	}{
		"negative calls":   {mut: func(c *council.Constraints) { c.MaxCalls = -1 }, want: "max_calls must not be negative"},
		"too few calls":    {mut: func(c *council.Constraints) { c.MaxCalls = 2 }, want: "max_calls=2 cannot pay for the first proposals of 3 agents"},
		"negative tokens":  {mut: func(c *council.Constraints) { c.MaxTotalTokens = -1 }, want: "max_total_tokens must not be negative"},
		"too few tokens":   {mut: func(c *council.Constraints) { c.MaxTotalTokens = 1600 }, want: "3 agents × max_tokens=512 and prompts of about"},
		"unknown review":   {mut: func(c *council.Constraints) { c.Review = "after" }, want: `review "after" is unknown`},
		"review with ray":  {mut: func(c *council.Constraints) { c.Review = council.ReviewBeforeFinal }, task: func(t *council.Task) { t.Backend = council.BackendRay }, want: "not supported with backend ray"},
		"review one-shot":  {mut: func(c *council.Constraints) { c.Review = council.ReviewBeforeFinal }, task: func(t *council.Task) { t.Kind = council.KindTaskExtraction; t.Agents = t.Agents[:1] }, want: "needs critique rounds"},
		"review functions": {mut: func(c *council.Constraints) { c.Review = council.ReviewBeforeFinal }},
	} {
		t.Run(name, func(t *testing.T) {
			task := controlTask(c.mut)
			if c.task != nil {
				c.task(&task)
			}
			_, err := council.New("dlb-x", task, t0)
			if c.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if !errors.Is(err, council.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New: %v; want ErrInvalid containing %q", err, c.want)
			}
		})
	}
}

func TestCancel(t *testing.T) {
	d := newDeliberation(t, counciltest.Task())
	send(d)
	recordProposal(t, d, council.ProposalKey(0, archi), prop(archi, 0), at(1))
	if !d.Cancel("  the user changed their mind ", at(2)) {
		t.Fatal("Cancel of a running deliberation reported no change")
	}
	if d.Status != council.StatusCancelled || !d.Status.Terminal() || d.Phase != council.PhaseDone ||
		d.Reason != "cancelled: the user changed their mind" || !d.FinishedAt.Equal(at(2)) {
		t.Fatalf("after cancel: %s %s %q %v", d.Status, d.Phase, d.Reason, d.FinishedAt)
	}
	if !slices.Equal(d.Outbox, []string{council.OutboxCancelled}) {
		t.Fatalf("outbox %v, want exactly the cancelled end", d.Outbox)
	}
	before := clone(t, d)
	// Twice, late results, ticks, a decision: nothing changes.
	if d.Cancel("again", at(3)) {
		t.Error("a second Cancel reported a change")
	}
	if ok, err := d.RecordProposal(council.ProposalKey(0, qa), prop(qa, 0), at(3)); ok || err != nil {
		t.Errorf("late proposal: %v, %v", ok, err)
	}
	if ok, err := d.RecordFailure(council.ProposalKey(0, devops), 1, "x", true, at(3)); ok || err != nil {
		t.Errorf("late failure: %v, %v", ok, err)
	}
	if d.Tick(at(10_000)) || d.Resend(at(10_000), time.Second) || d.Fail("x", at(3)) {
		t.Error("a transition changed a cancelled deliberation")
	}
	if ok, err := d.Decide(council.ReviewDecision{Decision: council.DecisionApprove}, at(3)); ok || err != nil {
		t.Errorf("decision: %v, %v", ok, err)
	}
	if diff := cmp.Diff(before, d); diff != "" {
		t.Errorf("changed (-before +after):\n%s", diff)
	}
	// A completed deliberation is not cancelled.
	done := newDeliberation(t, counciltest.Task())
	run(t, done, at(1))
	if done.Cancel("", at(2)) || done.Status != council.StatusCompleted {
		t.Errorf("Cancel of a completed deliberation: %s", done.Status)
	}
	plain := newDeliberation(t, counciltest.Task())
	plain.Cancel("", at(1))
	if plain.Reason != council.ReasonCancelled {
		t.Errorf("reason %q", plain.Reason)
	}
	if !council.IsEndKey(council.OutboxCancelled) || council.IsEndKey("p.0.x") {
		t.Error("IsEndKey")
	}
}

func reviewTask() council.Task {
	return controlTask(func(c *council.Constraints) { c.Review = council.ReviewBeforeFinal })
}

func TestReviewGateWaitsAndApproveCompletes(t *testing.T) {
	d := newDeliberation(t, reviewTask())
	run(t, d, at(1))
	if !d.AwaitingReview() || d.Status != council.StatusRunning || d.Review.Round != 1 {
		t.Fatalf("%s %s review %+v; want running at the gate, round 1", d.Status, d.Phase, d.Review)
	}
	if !slices.Equal(d.Outbox, []string{council.ReviewKey(1)}) {
		t.Fatalf("outbox %v, want the review request", d.Outbox)
	}
	cands := d.Ranking(at(2))
	if len(cands.Ranking) != 3 || !cands.Ranking[0].Scored || cands.Ranking[0].Proposal.Stage != 1 {
		t.Errorf("candidates %+v", ranks(&cands))
	}
	send(d)
	// Nothing but the deadline and a decision moves it.
	if d.Resend(at(3600), time.Second) || len(d.Outbox) != 0 {
		t.Error("Resend at the gate changed the state")
	}
	if ok, _ := d.Decide(council.ReviewDecision{Round: 2, Decision: council.DecisionApprove}, at(5)); ok {
		t.Error("a decision for another round was applied")
	}
	if ok, err := d.Decide(council.ReviewDecision{Round: 1, Decision: council.DecisionApprove}, at(5)); !ok || err != nil {
		t.Fatalf("approve: %v, %v", ok, err)
	}
	if d.Status != council.StatusCompleted || d.Result == nil || len(d.Result.Ranking) != 3 ||
		!slices.Equal(d.Outbox, []string{council.OutboxCompleted}) {
		t.Fatalf("after approve: %s, outbox %v", d.Status, d.Outbox)
	}
	if ok, _ := d.Decide(council.ReviewDecision{Decision: council.DecisionApprove}, at(6)); ok {
		t.Error("a second approve was applied")
	}
}

func TestReviewRejectFails(t *testing.T) {
	d := newDeliberation(t, reviewTask())
	run(t, d, at(1))
	if ok, err := d.Decide(council.ReviewDecision{Decision: council.DecisionReject, Reason: " not what we need "}, at(2)); !ok || err != nil {
		t.Fatalf("reject: %v, %v", ok, err)
	}
	if d.Status != council.StatusFailed || d.Reason != "review_rejected: not what we need" {
		t.Fatalf("%s %q", d.Status, d.Reason)
	}
}

func TestReviewFeedbackRunsOneMoreRound(t *testing.T) {
	d := newDeliberation(t, reviewTask())
	run(t, d, at(1))
	calls := d.Calls
	if ok, err := d.Decide(council.ReviewDecision{Decision: council.DecisionFeedback, Feedback: "Add rate limits.", Reviewer: "ana"}, at(2)); !ok || err != nil {
		t.Fatalf("feedback: %v, %v", ok, err)
	}
	if d.Stage != 2 || d.Phase != council.PhaseProposing || d.Calls != calls+3 {
		t.Fatalf("stage %d %s calls %d; want the revisions of stage 2", d.Stage, d.Phase, d.Calls)
	}
	r, err := d.ProposalRequest(council.ProposalKey(2, qa))
	if err != nil {
		t.Fatal(err)
	}
	if r.Feedback != "Add rate limits." || r.Previous == nil || r.Previous.Stage != 1 {
		t.Fatalf("request %+v", r)
	}
	msgs := council.ProposalMessages(r)
	if !strings.Contains(msgs[1].Content, "human reviewer") || !strings.Contains(msgs[1].Content, "Add rate limits.") {
		t.Errorf("the revision prompt does not carry the feedback:\n%s", msgs[1].Content)
	}
	if d.FeedbackFor(1) != "" {
		t.Error("feedback for a stage that had none")
	}
	run(t, d, at(3))
	if !d.AwaitingReview() || d.Review.Round != 2 || d.Stage != 2 {
		t.Fatalf("%s %s round %d stage %d; want the gate again, round 2", d.Status, d.Phase, d.Review.Round, d.Stage)
	}
	if ok, _ := d.Decide(council.ReviewDecision{Round: 1, Decision: council.DecisionApprove}, at(4)); ok {
		t.Error("a decision of the first gate was applied at the second")
	}
	if ok, _ := d.Decide(council.ReviewDecision{Round: 2, Decision: council.DecisionApprove}, at(4)); !ok {
		t.Fatal("approve of round 2 not applied")
	}
	if d.Result.Ranking[0].Proposal.Stage != 2 {
		t.Errorf("the result ranks stage %d, want 2", d.Result.Ranking[0].Proposal.Stage)
	}
	c := d.Clone()
	c.Review.Feedback[0].Text = "changed"
	if d.Review.Feedback[0].Text != "Add rate limits." {
		t.Error("Clone shares the review's feedback")
	}
}

func TestReviewFeedbackTheBudgetCannotPayFails(t *testing.T) {
	d := newDeliberation(t, controlTask(func(c *council.Constraints) { c.Review = council.ReviewBeforeFinal; c.MaxCalls = 12 }))
	run(t, d, at(1))
	if !d.AwaitingReview() {
		t.Fatalf("%s %s", d.Status, d.Phase)
	}
	if ok, _ := d.Decide(council.ReviewDecision{Decision: council.DecisionFeedback, Feedback: "more"}, at(2)); !ok {
		t.Fatal("feedback not applied")
	}
	if d.Status != council.StatusFailed || !strings.HasPrefix(d.Reason, "budget_exceeded: the feedback round") {
		t.Fatalf("%s %q", d.Status, d.Reason)
	}
}

func TestBudgetStopWaitsAtTheGate(t *testing.T) {
	d := newDeliberation(t, controlTask(func(c *council.Constraints) { c.Review = council.ReviewBeforeFinal; c.MaxCalls = 8 }))
	run(t, d, at(1))
	if !d.AwaitingReview() || d.Review.Stopped != council.ReasonBudgetExceeded {
		t.Fatalf("%s %s %+v", d.Status, d.Phase, d.Review)
	}
	if ok, _ := d.Decide(council.ReviewDecision{Decision: council.DecisionApprove}, at(2)); !ok {
		t.Fatal("approve not applied")
	}
	if d.Result.Stopped != council.ReasonBudgetExceeded {
		t.Errorf("stopped %q", d.Result.Stopped)
	}
}

func TestReviewGateTimesOut(t *testing.T) {
	d := newDeliberation(t, reviewTask())
	run(t, d, at(1))
	if !d.Tick(d.Deadline) || d.Status != council.StatusFailed || !strings.Contains(d.Reason, "awaiting review") {
		t.Fatalf("%s %q", d.Status, d.Reason)
	}
}

func TestReviewDecisionCheck(t *testing.T) {
	for _, c := range []struct {
		r    council.ReviewDecision
		want string
	}{
		{council.ReviewDecision{Decision: "maybe"}, `decision "maybe" is unknown`},
		{council.ReviewDecision{Decision: council.DecisionReject}, "a reject needs a reason"},
		{council.ReviewDecision{Decision: council.DecisionFeedback, Feedback: " "}, "needs a feedback text"},
		{council.ReviewDecision{Decision: council.DecisionFeedback, Feedback: strings.Repeat("x", council.MaxFeedbackBytes+1)}, "feedback is longer"},
		{council.ReviewDecision{Decision: council.DecisionApprove, Round: -1}, "round must not be negative"},
	} {
		err := c.r.Check()
		if !errors.Is(err, council.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Check(%+v) = %v, want %q", c.r.Decision, err, c.want)
		}
		d := newDeliberation(t, reviewTask())
		if _, err := d.Decide(c.r, at(1)); !errors.Is(err, council.ErrInvalid) {
			t.Errorf("Decide(%+v) = %v, want ErrInvalid", c.r.Decision, err)
		}
	}
	// A decision for a deliberation that has no gate open is ignored.
	d := newDeliberation(t, counciltest.Task())
	if ok, err := d.Decide(council.ReviewDecision{Decision: council.DecisionApprove}, at(1)); ok || err != nil {
		t.Errorf("decision without a gate: %v, %v", ok, err)
	}
}

func TestReviewKeys(t *testing.T) {
	if k := council.ReviewKey(3); k != "review.3" {
		t.Errorf("ReviewKey(3) = %q", k)
	}
	for key, want := range map[string]int{"review.3": 3, "review.0": 0, "review.x": 0, "p.0.a": 0} {
		n, ok := council.ParseReviewKey(key)
		if n != want && ok || ok != (want > 0) {
			t.Errorf("ParseReviewKey(%q) = %d, %v", key, n, ok)
		}
	}
	if !council.ReviewBeforeFinal.Valid() || council.ReviewMode("x").Valid() {
		t.Error("ReviewMode.Valid")
	}
}

// TestEngineKeepsTheBudget: the in-process engine (the Ray backend) runs
// the same transitions, so a budget stops its work as it stops execute's.
func TestEngineKeepsTheBudget(t *testing.T) {
	task := controlTask(func(c *council.Constraints) { c.MaxCalls = 8 })
	d, err := council.New("dlb-engine-budget", task, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	llm := &counciltest.Completer{}
	if err := (&council.Engine{LLM: llm}).Run(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	if d.Status != council.StatusCompleted || d.Result.Stopped != council.ReasonBudgetExceeded || d.Calls != 6 {
		t.Fatalf("%s, stopped %q, %d calls", d.Status, d.Result.Stopped, d.Calls)
	}
	if n := len(llm.Requests()); n != 6 {
		t.Errorf("%d LLM calls, want 6", n)
	}
}

// TestReviewGateWithOneSurvivor: when one agent is left, its proposal
// goes to the gate unreviewed, and a feedback round asks it alone, with no
// critiques to pay for.
func TestReviewGateWithOneSurvivor(t *testing.T) {
	d := newDeliberation(t, controlTask(func(c *council.Constraints) {
		c.Review, c.MaxRetries, c.MaxCalls = council.ReviewBeforeFinal, 0, 5
	}))
	send(d)
	recordFailure(t, d, council.ProposalKey(0, qa), 1, "down", false, at(1))
	recordFailure(t, d, council.ProposalKey(0, devops), 1, "down", false, at(1))
	recordProposal(t, d, council.ProposalKey(0, archi), prop(archi, 0), at(2))
	if !d.AwaitingReview() || d.Stage != 0 {
		t.Fatalf("%s %s stage %d; want the gate at stage 0", d.Status, d.Phase, d.Stage)
	}
	if ok, err := d.Decide(council.ReviewDecision{Decision: council.DecisionFeedback, Feedback: "shorter"}, at(3)); !ok || err != nil {
		t.Fatalf("feedback: %v, %v", ok, err)
	}
	if d.Calls != 4 || len(d.Pending()) != 1 {
		t.Fatalf("%d calls, %d pending; want the one revision", d.Calls, len(d.Pending()))
	}
	recordProposal(t, d, council.ProposalKey(1, archi), prop(archi, 1), at(4))
	if !d.AwaitingReview() || d.Review.Round != 2 {
		t.Fatalf("%s %s round %d", d.Status, d.Phase, d.Review.Round)
	}
}

// TestUndeliverableEndsACompletedDeliberationFailed: a result the broker
// cannot take turns the completed end into a failed one, once.
func TestUndeliverableEndsACompletedDeliberationFailed(t *testing.T) {
	d := newDeliberation(t, counciltest.Task())
	if d.Undeliverable("too large", at(1)) {
		t.Error("Undeliverable of a running deliberation reported a change")
	}
	run(t, d, at(1))
	if !d.Undeliverable("the result cannot be delivered: too large", at(2)) {
		t.Fatal("Undeliverable of a completed deliberation reported no change")
	}
	if d.Status != council.StatusFailed || d.Result != nil || !slices.Equal(d.Outbox, []string{council.OutboxFailed}) {
		t.Errorf("%s, result %v, outbox %v", d.Status, d.Result, d.Outbox)
	}
	if d.Undeliverable("again", at(3)) {
		t.Error("a second Undeliverable reported a change")
	}
	if n := counciltest.Task().WithDefaults().ResultSize(); n <= 0 {
		t.Errorf("ResultSize = %d", n)
	}
	if err := council.TooLargef("%d bytes", 9); !errors.Is(err, council.ErrTooLarge) || council.Retryable(err) {
		t.Errorf("TooLargef: %v", err)
	}
}

func TestCancelEndsAPoolRun(t *testing.T) {
	task := counciltest.Task()
	task.Backend = council.BackendRay
	d := newDeliberation(t, task)
	d.BeginPoolRun("pool-dlb-test-1", 1, at(1))
	d.JobSubmitted("pool-dlb-test-1", council.JobInfo{State: council.JobPending})
	d.Cancel("", at(2))
	if d.Job.State != council.JobStopped || !d.Job.EndedAt.Equal(at(2)) || d.Owes() != true {
		t.Fatalf("pool run after the cancel: %+v, owes %v", d.Job, d.Owes())
	}
	d.Acknowledge(council.OutboxCancelled)
	if d.Owes() {
		t.Error("a cancelled pool run, its end sent, still owes something")
	}
}
