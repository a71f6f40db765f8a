package council

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Control of a running deliberation: budgets (constraints.max_calls and
// constraints.max_total_tokens), cancel, and the human review gate
// (constraints.review). Like every transition of a Deliberation these are
// pure: callers store the state, then send what the outbox names.

// ReasonBudgetExceeded starts the reason of a deliberation a budget ended
// as failed, and is Result.Stopped of one a budget ended early as completed.
const ReasonBudgetExceeded = "budget_exceeded"

// ReasonCancelled starts the reason of a cancelled deliberation.
const ReasonCancelled = "cancelled"

// ReasonReviewRejected starts the reason of a deliberation its reviewer
// rejected at the gate (it ends failed).
const ReasonReviewRejected = "review_rejected"

// ReviewMode says whether, and where, a deliberation waits for a human.
type ReviewMode string

// Review modes.
const (
	// ReviewNone (the default) never waits.
	ReviewNone ReviewMode = ""
	// ReviewBeforeFinal waits after the critique rounds, before the end.
	ReviewBeforeFinal ReviewMode = "before_final"
)

// Valid reports whether m is a known mode.
func (m ReviewMode) Valid() bool { return m == ReviewNone || m == ReviewBeforeFinal }

// ReviewState is the record of a deliberation's review gate.
type ReviewState struct {
	// Round counts the times the deliberation reached the gate (from 1);
	// the review.requested event of each has its own key (ReviewKey).
	Round int
	// Stopped is Result.Stopped of the ranking waiting at the gate (a
	// budget ended the rounds early).
	Stopped string
	// Feedback is the reviewers' feedback, one per extra revision round.
	Feedback []ReviewFeedback
}

// ReviewFeedback is the text a reviewer gave at a gate; the revisions of
// Stage are asked to address it.
type ReviewFeedback struct {
	Stage    int
	Text     string
	Reviewer string
}

// Decision is what a reviewer decides at the gate.
type Decision string

// Decisions.
const (
	DecisionApprove  Decision = "approve"
	DecisionReject   Decision = "reject"
	DecisionFeedback Decision = "feedback"
)

// ReviewDecision is a reviewer's answer to a review request.
type ReviewDecision struct {
	// Round is the gate the decision answers (ReviewState.Round); 0
	// answers the gate that is open.
	Round    int
	Decision Decision
	// Reason says why (reject; optional otherwise).
	Reason string
	// Feedback is the text the next revision round addresses (feedback).
	Feedback string
	Reviewer string
}

// MaxFeedbackBytes bounds a reviewer's feedback text.
const MaxFeedbackBytes = 16 << 10

// Check returns an error wrapping ErrInvalid unless r is a decision that
// can be applied: a known decision, a reason for reject, a feedback text
// (at most MaxFeedbackBytes) for feedback, a round ≥ 0.
func (r ReviewDecision) Check() error {
	var problems []string
	switch r.Decision {
	case DecisionApprove:
	case DecisionReject:
		if strings.TrimSpace(r.Reason) == "" {
			problems = append(problems, "a reject needs a reason")
		}
	case DecisionFeedback:
		if strings.TrimSpace(r.Feedback) == "" {
			problems = append(problems, "a feedback decision needs a feedback text")
		}
	default:
		problems = append(problems, fmt.Sprintf("decision %q is unknown (want approve, reject or feedback)", r.Decision))
	}
	if len(r.Feedback) > MaxFeedbackBytes {
		problems = append(problems, fmt.Sprintf("feedback is longer than %d bytes", MaxFeedbackBytes))
	}
	if r.Round < 0 {
		problems = append(problems, fmt.Sprintf("round must not be negative, got %d", r.Round))
	}
	if len(problems) > 0 {
		return Invalidf("%s", strings.Join(problems, "; "))
	}
	return nil
}

// ReviewKey is the outbox key of the review request of gate round.
func ReviewKey(round int) string { return "review." + strconv.Itoa(round) }

// ParseReviewKey returns the round of a review outbox key, and false for
// any other key.
func ParseReviewKey(key string) (int, bool) {
	s, ok := strings.CutPrefix(key, "review.")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n > 0
}

// Spent is the usage recorded so far: the proposals and critiques that
// answered (a failed call reports no usage).
func (d *Deliberation) Spent() Usage {
	var u Usage
	for _, p := range d.Proposals {
		u = u.Add(p.Usage)
	}
	for _, c := range d.Critiques {
		u = u.Add(c.Usage)
	}
	return u
}

// affords reports whether the budgets allow n more calls whose prompts
// are estimated at prompt tokens, and when not, why. Calls: every call
// issued so far (retries included) plus n must fit max_calls. Tokens: the
// total tokens recorded so far (prompt and completion, as the LLM server
// reported them) plus the next calls' prompts (estimated: EstimateTokens)
// plus n × max_tokens (the most a call may complete) must fit
// max_total_tokens. The prompt estimate is not exact, and a failed call
// reports no usage, so the spend may end somewhat above the token budget.
func (d *Deliberation) affords(n, prompt int) (bool, string) {
	c := d.Task.Constraints
	if c.MaxCalls > 0 && d.Calls+n > c.MaxCalls {
		return false, fmt.Sprintf("would need %d more call(s): %d of max_calls=%d made", n, d.Calls, c.MaxCalls)
	}
	if c.MaxTotalTokens > 0 {
		used := d.Spent().TotalTokens
		if need := prompt + n*c.MaxTokens; used+need > c.MaxTotalTokens {
			return false, fmt.Sprintf("would need up to %d more token(s) (%d call(s): prompts of about %d and max_tokens=%d each): %d of max_total_tokens=%d used",
				need, n, prompt, c.MaxTokens, used, c.MaxTotalTokens)
		}
	}
	return true, ""
}

// EstimateTokens estimates the tokens of the prompt msgs: a token per 4
// bytes of text, the usual ratio of English prose for the tokenizers of
// current models (code and other languages take more).
func EstimateTokens(msgs []Message) int {
	n := 0
	for _, m := range msgs {
		n += len(m.Content)
	}
	return (n + bytesPerToken - 1) / bytesPerToken
}

// firstPrompts estimates the prompts of the first proposals of t.
func (t Task) firstPrompts() int {
	n := 0
	for _, a := range t.Agents {
		n += EstimateTokens(ProposalMessages(ProposalRequest{Task: t.For(a), Agent: a}))
	}
	return n
}

// workPrompt estimates the prompt of pending work w (a retry).
func (d *Deliberation) workPrompt(w *Work) int {
	if w.Kind == WorkProposal {
		r, _ := d.ProposalRequest(w.Key)
		return EstimateTokens(ProposalMessages(r))
	}
	r, _ := d.CritiqueRequest(w.Key)
	return EstimateTokens(CritiqueMessages(r))
}

// critiquePrompts estimates the prompts of the critiques of the current
// stage's proposals of alive (assignCritiques).
func (d *Deliberation) critiquePrompts(alive []Agent) int {
	k := d.reviewersPerProposal(d.Stage, len(alive))
	n := 0
	for i, author := range alive {
		p := d.Proposals[ProposalKey(d.Stage, author.ID)]
		for j := 1; j <= k; j++ {
			reviewer := alive[(i+j)%len(alive)]
			n += EstimateTokens(CritiqueMessages(CritiqueRequest{Task: d.Task.For(reviewer), Reviewer: reviewer, Proposal: p}))
		}
	}
	return n
}

// roundPrompts estimates the prompts of a revision round of alive
// addressing feedback and of its critiques, whose proposals do not exist
// yet: each is counted at max_tokens.
func (d *Deliberation) roundPrompts(alive []Agent, feedback string) int {
	n := 0
	for _, a := range alive {
		r := ProposalRequest{Task: d.Task.For(a), Agent: a, Stage: d.Stage + 1, Critiques: d.critiquesOf(d.Stage, a.ID), Feedback: feedback}
		if p, ok := d.Proposals[ProposalKey(d.Stage, a.ID)]; ok {
			r.Previous = &p
		}
		n += EstimateTokens(ProposalMessages(r))
	}
	k := d.reviewersPerProposal(d.Stage+1, len(alive))
	for _, reviewer := range alive {
		if k < 1 {
			break
		}
		empty := EstimateTokens(CritiqueMessages(CritiqueRequest{Task: d.Task.For(reviewer), Reviewer: reviewer}))
		n += k * (empty + d.Task.Constraints.MaxTokens)
	}
	return n
}

// finish ends the rounds: the review gate when the task asks for one,
// completed otherwise; stopped is Result.Stopped.
func (d *Deliberation) finish(now time.Time, stopped string) {
	if d.startJudge(now, stopped) {
		return
	}
	if d.Task.Constraints.Review != ReviewBeforeFinal {
		d.complete(now, stopped)
		return
	}
	if d.Review == nil {
		d.Review = &ReviewState{}
	}
	d.Review.Round++
	d.Review.Stopped = stopped
	d.Phase = PhaseAwaitingReview
	d.Outbox = append(d.Outbox, ReviewKey(d.Review.Round))
}

// AwaitingReview reports whether d waits at its review gate.
func (d *Deliberation) AwaitingReview() bool {
	return d.Status == StatusRunning && d.Phase == PhaseAwaitingReview
}

// Decide applies a reviewer's decision at the gate: approve completes the
// deliberation with the ranking that waited; reject fails it with reason
// "review_rejected: <reason>"; feedback starts one more revision round of
// the surviving agents, whose prompts carry the text (FeedbackFor), then
// its critiques and the gate again — unless the budget cannot pay for
// that round, which ends the deliberation failed (budget_exceeded). A
// decision while d does not wait at the gate (not yet, any more, or for
// another round: a duplicate or a late one) changes nothing and reports
// false. An invalid decision returns an error wrapping ErrInvalid.
func (d *Deliberation) Decide(r ReviewDecision, now time.Time) (bool, error) {
	if err := r.Check(); err != nil {
		return false, err
	}
	if !d.AwaitingReview() || d.Review == nil || (r.Round != 0 && r.Round != d.Review.Round) {
		return false, nil
	}
	// Decided: a request not sent yet is no longer of use.
	d.Acknowledge(ReviewKey(d.Review.Round))
	switch r.Decision {
	case DecisionApprove:
		d.complete(now, d.Review.Stopped)
	case DecisionReject:
		d.fail(ReasonReviewRejected+": "+strings.TrimSpace(r.Reason), now)
	default:
		alive := d.survivors(d.Stage)
		n := d.roundCalls(alive)
		if ok, why := d.affords(n, d.roundPrompts(alive, r.Feedback)); !ok {
			d.fail(ReasonBudgetExceeded+": the feedback round "+why, now)
			return true, nil
		}
		d.Review.Stopped = ""
		d.Review.Feedback = append(d.Review.Feedback, ReviewFeedback{Stage: d.Stage + 1, Text: r.Feedback, Reviewer: r.Reviewer})
		d.revise(alive, now)
	}
	return true, nil
}

// FeedbackFor returns the reviewer's feedback the revisions of stage
// address ("" for none).
func (d *Deliberation) FeedbackFor(stage int) string {
	if d.Review == nil {
		return ""
	}
	for _, f := range d.Review.Feedback {
		if f.Stage == stage {
			return f.Text
		}
	}
	return ""
}

// Cancel ends a running deliberation as cancelled, with reason
// "cancelled" or "cancelled: <why>" (a run in the Ray pool ends with it):
// no further work is issued, results
// arriving later are ignored (every transition is a no-op on an ended
// deliberation), and the outbox holds exactly one terminal event,
// OutboxCancelled. Cancelling an ended deliberation (cancelled or not)
// changes nothing and reports false.
func (d *Deliberation) Cancel(why string, now time.Time) bool {
	if d.Status.Terminal() {
		return false
	}
	reason := ReasonCancelled
	if why = strings.TrimSpace(why); why != "" {
		reason += ": " + why
	}
	d.Status, d.Phase, d.Reason, d.FinishedAt = StatusCancelled, PhaseDone, reason, now
	d.dropWorkFromOutbox()
	d.Outbox = append(d.Outbox, OutboxCancelled)
	if j := d.Job; j != nil && j.Pool && !j.State.Terminal() {
		// A pool run has no Ray job of its own to stop: it ends here (a
		// worker that takes the work item finds the deliberation ended).
		j.State, j.Message, j.EndedAt = JobStopped, reason, now
	}
	return true
}
