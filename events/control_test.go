package events_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"council.dev/events"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

func controlDeliberation(t *testing.T, mut func(*council.Constraints)) *council.Deliberation {
	t.Helper()
	task := counciltest.Task()
	mut(&task.Constraints)
	d, err := council.New("dlb-ctl", task, t0)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestControlConstraintsThroughTheCodec(t *testing.T) {
	task := counciltest.Task()
	task.Constraints.MaxCalls, task.Constraints.MaxTotalTokens, task.Constraints.Review = 12, 9000, council.ReviewBeforeFinal
	got, err := events.DecodeRequest(deliver(t, events.NewRequest("test", "req-1", task, t0)))
	if err != nil {
		t.Fatal(err)
	}
	c := got.Constraints
	if c.MaxCalls != 12 || c.MaxTotalTokens != 9000 || c.Review != council.ReviewBeforeFinal {
		t.Errorf("constraints %+v", c)
	}
}

func TestCancelAndCancelledThroughTheCodec(t *testing.T) {
	id, reason, err := events.DecodeCancel(deliver(t, events.NewCancel("council.dev/cli", "c-1", "dlb-ctl", " dropped ", t0)))
	if err != nil || id != "dlb-ctl" || reason != "dropped" {
		t.Fatalf("DecodeCancel = %q, %q, %v", id, reason, err)
	}
	d := controlDeliberation(t, func(*council.Constraints) {})
	k := d.Outbox[0]
	if _, err := d.RecordProposal(k, counciltest.ProposalFor(*d.Work[k]), t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	d.Cancel("dropped", t0.Add(2*time.Second))
	env := events.NewCancelled("council.dev/execute", d, t0.Add(2*time.Second))
	if env.ID != "dlb-ctl.cancelled" || env.Type != events.TypeDeliberationCancelled {
		t.Errorf("envelope %s %s", env.ID, env.Type)
	}
	got, err := events.DecodeCancelled(deliver(t, env))
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != "cancelled" || got.Reason != "cancelled: dropped" || got.Calls != 3 || got.Usage.TotalTokens == 0 || got.DurationMS != 2000 {
		t.Errorf("cancelled %+v", got)
	}
}

func TestReviewEventsThroughTheCodec(t *testing.T) {
	d := controlDeliberation(t, func(c *council.Constraints) { c.Review = council.ReviewBeforeFinal; c.MaxCalls = 8 })
	for !d.AwaitingReview() {
		for _, k := range append([]string(nil), d.Outbox...) {
			d.Acknowledge(k)
			w := d.Work[k]
			if w.Kind == council.WorkProposal {
				_, _ = d.RecordProposal(k, counciltest.ProposalFor(*w), t0)
			} else {
				_, _ = d.RecordCritique(k, counciltest.CritiqueFor(*w, d.Task.Constraints.Rubric), t0)
			}
		}
	}
	env := events.NewReviewRequested("council.dev/execute", d, 1, t0.Add(time.Second))
	if env.ID != "dlb-ctl.review.1" {
		t.Errorf("id %s", env.ID)
	}
	rr, err := events.DecodeReviewRequested(deliver(t, env))
	if err != nil {
		t.Fatal(err)
	}
	if rr.Round != 1 || len(rr.Ranking) != 3 || !rr.Ranking[0].Scored || rr.Calls != 6 || rr.Stopped != "budget_exceeded" || !rr.Deadline.Equal(d.Deadline) {
		t.Errorf("review.requested %+v", rr)
	}
	for _, want := range []council.ReviewDecision{
		{Round: 1, Decision: council.DecisionApprove, Reviewer: "ana"},
		{Decision: council.DecisionReject, Reason: "no"},
		{Round: 2, Decision: council.DecisionFeedback, Feedback: "more tests"},
	} {
		id, got, err := events.DecodeReviewDecided(deliver(t, events.NewReviewDecided("council.dev/cli", "r-1", "dlb-ctl", want, t0)))
		if err != nil || id != "dlb-ctl" {
			t.Fatalf("DecodeReviewDecided = %q, %v", id, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("decision (-want +got):\n%s", diff)
		}
	}
	_, _, err = events.DecodeReviewDecided(deliver(t, events.NewReviewDecided("council.dev/cli", "r-2", "dlb-ctl",
		council.ReviewDecision{Decision: council.DecisionApprove, Round: 1, Feedback: strings.Repeat("x", council.MaxFeedbackBytes+1)}, t0)))
	if !errors.Is(err, council.ErrInvalid) {
		t.Errorf("an oversized feedback: %v", err)
	}
}

func TestReviewFeedbackReachesTheRevisionRequest(t *testing.T) {
	d := controlDeliberation(t, func(c *council.Constraints) { c.Review = council.ReviewBeforeFinal })
	if err := finishGate(d); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Decide(council.ReviewDecision{Decision: council.DecisionFeedback, Feedback: "Mind the failover."}, t0); err != nil {
		t.Fatal(err)
	}
	r, err := d.ProposalRequest(council.ProposalKey(d.Stage, d.Task.Agents[0].ID))
	if err != nil {
		t.Fatal(err)
	}
	got, err := events.DecodeProposalRequested(deliver(t, events.NewProposalRequested("council.dev/execute", r, t0)))
	if err != nil {
		t.Fatal(err)
	}
	if got.Feedback != "Mind the failover." {
		t.Errorf("feedback %q", got.Feedback)
	}
}

func finishGate(d *council.Deliberation) error {
	for !d.AwaitingReview() && !d.Status.Terminal() {
		for _, k := range append([]string(nil), d.Outbox...) {
			d.Acknowledge(k)
			w := d.Work[k]
			var err error
			if w.Kind == council.WorkProposal {
				_, err = d.RecordProposal(k, counciltest.ProposalFor(*w), t0)
			} else {
				_, err = d.RecordCritique(k, counciltest.CritiqueFor(*w, d.Task.Constraints.Rubric), t0)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func TestStateKeepsControl(t *testing.T) {
	// 15 calls to the gate (the final review by all pairs is 6), 9 for the
	// feedback round.
	d := controlDeliberation(t, func(c *council.Constraints) { c.Review = council.ReviewBeforeFinal; c.MaxCalls = 24 })
	if err := finishGate(d); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Decide(council.ReviewDecision{Decision: council.DecisionFeedback, Feedback: "again", Reviewer: "ana"}, t0); err != nil {
		t.Fatal(err)
	}
	codec := events.NewStateCodec(0)
	header, records, err := codec.Encode(d)
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string][]byte{}
	for _, r := range records {
		byKey[r.Key] = r.Data
	}
	got, err := events.NewStateCodec(0).Decode(header, func(keys []string) ([][]byte, error) {
		out := make([][]byte, len(keys))
		for i, k := range keys {
			out[i] = byKey[k]
		}
		return out, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Calls != d.Calls || got.Review == nil || got.Review.Round != 1 || got.FeedbackFor(d.Stage) != "again" ||
		got.Task.Constraints.MaxCalls != 24 || got.Task.Constraints.Review != council.ReviewBeforeFinal {
		t.Errorf("decoded calls %d review %+v constraints %+v", got.Calls, got.Review, got.Task.Constraints)
	}
}
