package main

import (
	"context"
	"fmt"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"council.dev/events"
	"council.dev/shared/council"
)

const cancelSynopsis = `cancel -nats URL|-to URL [flags] ID

Ends a running deliberation as cancelled (dev.council.deliberation.cancel.v1):
no further work is issued, late results are ignored, a Ray job is stopped,
and exactly one dev.council.deliberation.cancelled.v1 is sent. Cancelling an
ended deliberation changes nothing.`

const reviewSynopsis = `review -nats URL|-to URL [flags] ID approve|reject|feedback

Decides at the review gate of a deliberation that waits there
(constraints.review before_final; dev.council.review.decided.v1):
  approve                  complete it with the ranked candidates
  reject -reason WHY       fail it (reason review_rejected: WHY)
  feedback -text TEXT      one more revision round addressing TEXT, its
                           critiques, and the gate again`

// controlTarget is where a control event goes: -nats or -to, as send.
type controlTarget struct {
	natsURL, to *string
	timeout     *time.Duration
}

func targetFlags(fl interface {
	String(name, value, usage string) *string
	Duration(name string, value time.Duration, usage string) *time.Duration
}, s streams) controlTarget {
	return controlTarget{
		natsURL: fl.String("nats", envOr(s.getenv, "COUNCIL_NATS_URL", ""), "NATS URL: publish to the JetStream broker stream (default $COUNCIL_NATS_URL)"),
		to:      fl.String("to", "", "URL to POST the event to instead: execute or the Knative broker ingress"),
		timeout: fl.Duration("timeout", 30*time.Second, "how long to wait for the broker or execute"),
	}
}

func (c controlTarget) check() error {
	if (*c.natsURL == "") == (*c.to == "") {
		return usagef("want exactly one of -nats URL (JetStream) and -to URL (HTTP)")
	}
	return nil
}

func (c controlTarget) send(ctx context.Context, e event.Event, s streams) error {
	ctx, cancel := context.WithTimeout(ctx, *c.timeout)
	defer cancel()
	if *c.to != "" {
		return post(ctx, *c.to, "binary", e, s.out)
	}
	opts, err := natsOptions(s.getenv)
	if err != nil {
		return err
	}
	return publish(ctx, *c.natsURL, e, s.out, opts...)
}

func cancelCmd(ctx context.Context, args []string, s streams) error {
	fl := newFlags("cancel", cancelSynopsis, s)
	target := targetFlags(fl, s)
	reason := fl.String("reason", "", "why, for the record (the cancelled event's reason becomes 'cancelled: REASON')")
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one deliberation ID, got %d arguments", len(pos))
	}
	if err := council.CheckDeliberationID(pos[0]); err != nil {
		return usagef("%v", err)
	}
	if err := target.check(); err != nil {
		return err
	}
	now := time.Now()
	e := events.ToEvent(events.NewCancel("council.dev/cli", freshID(now), pos[0], *reason, now))
	if _, _, err := events.DecodeCancel(e); err != nil {
		return usagef("%v", err)
	}
	return target.send(ctx, e, s)
}

func reviewCmd(ctx context.Context, args []string, s streams) error {
	fl := newFlags("review", reviewSynopsis, s)
	target := targetFlags(fl, s)
	reason := fl.String("reason", "", "why (required for reject)")
	text := fl.String("text", "", "the feedback the extra revision round addresses (required for feedback)")
	round := fl.Int("round", 0, "the gate's round (review.requested's round); 0: the gate that is open")
	reviewer := fl.String("reviewer", envOr(s.getenv, "USER", ""), "who decides, for the record (default $USER)")
	pos, err := parseFlags(fl, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("want ID and approve, reject or feedback, got %d arguments", len(pos))
	}
	if err := council.CheckDeliberationID(pos[0]); err != nil {
		return usagef("%v", err)
	}
	if err := target.check(); err != nil {
		return err
	}
	r := council.ReviewDecision{
		Round: *round, Decision: council.Decision(pos[1]), Reason: *reason, Feedback: *text, Reviewer: *reviewer,
	}
	if err := r.Check(); err != nil {
		return usagef("%v", err)
	}
	now := time.Now()
	e := events.ToEvent(events.NewReviewDecided("council.dev/cli", freshID(now), pos[0], r, now))
	if _, _, err := events.DecodeReviewDecided(e); err != nil {
		return usagef("%v", err)
	}
	return target.send(ctx, e, s)
}

// describeControl is the watch line of the control events.
func describeControl(e event.Event) (string, bool) {
	switch e.Type() {
	case events.TypeDeliberationCancel:
		_, reason, err := events.DecodeCancel(e)
		if err != nil {
			return fmt.Sprintf("invalid cancel: %v", err), true
		}
		return "reason: " + orDefault(reason, "none given"), true
	case events.TypeDeliberationCancelled:
		c, err := events.DecodeCancelled(e)
		if err != nil {
			return fmt.Sprintf("unreadable: %v", err), true
		}
		return fmt.Sprintf("%s · %d calls · %d tokens", c.Reason, c.Calls, c.Usage.TotalTokens), true
	case events.TypeReviewRequested:
		r, err := events.DecodeReviewRequested(e)
		if err != nil {
			return fmt.Sprintf("unreadable: %v", err), true
		}
		lead := "none"
		if len(r.Ranking) > 0 {
			lead = fmt.Sprintf("%s (%.2f)", r.Ranking[0].Proposal.AgentID, r.Ranking[0].Score)
		}
		return fmt.Sprintf("round %d · stage %d · %d candidate(s), first %s · waits until %s · decide with: council review %s approve|reject|feedback",
			r.Round, r.Stage, len(r.Ranking), lead, r.Deadline.Local().Format(time.DateTime), r.DeliberationID), true
	case events.TypeReviewDecided:
		_, d, err := events.DecodeReviewDecided(e)
		if err != nil {
			return fmt.Sprintf("invalid decision: %v", err), true
		}
		out := string(d.Decision)
		if d.Round > 0 {
			out += fmt.Sprintf(" (round %d)", d.Round)
		}
		if d.Reviewer != "" {
			out += " by " + d.Reviewer
		}
		switch {
		case d.Reason != "":
			out += ": " + d.Reason
		case d.Feedback != "":
			out += ": " + shorten(d.Feedback, 120)
		}
		return out, true
	}
	return "", false
}
