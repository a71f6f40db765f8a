package events

import (
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"council.dev/shared/council"
)

// The events that control a running deliberation: cancel (and its
// terminal event, cancelled) and the human review gate (requested, decided).

// Cancel is the data of deliberation.cancel.v1: end a running deliberation.
type Cancel struct {
	DeliberationID string `json:"deliberation_id"`
	// Reason says why, for the record (optional).
	Reason string `json:"reason,omitempty"`
}

// Cancelled is the data of deliberation.cancelled.v1, the terminal event
// of a cancelled deliberation: the fields of Failed, with status
// "cancelled" and the reason "cancelled" or "cancelled: <reason>".
type Cancelled Failed

// ReviewRequested is the data of review.requested.v1: the ranked
// candidates of a deliberation that waits at its review gate.
type ReviewRequested struct {
	DeliberationID string `json:"deliberation_id"`
	TaskID         string `json:"task_id"`
	// Round is the gate's round (from 1); a decision names it.
	Round int `json:"round"`
	// Stage is the stage whose proposals are ranked.
	Stage int `json:"stage"`
	// Deadline is when the deliberation fails if no decision comes.
	Deadline time.Time `json:"deadline"`
	Ranking  []Ranked  `json:"ranking"`
	Failures []Failure `json:"failures"`
	Usage    Usage     `json:"usage"`
	Calls    int       `json:"calls"`
	// Stopped is budget_exceeded when a budget ended the rounds early.
	Stopped  string            `json:"stopped,omitempty"`
	Metadata map[string]string `json:"metadata"`
	// Agreement is Kendall's W of the candidates' review (as in Completed).
	Agreement *float64 `json:"agreement,omitempty"`
}

// ReviewDecided is the data of review.decided.v1: a reviewer's decision.
type ReviewDecided struct {
	DeliberationID string `json:"deliberation_id"`
	// Round is the gate the decision answers; absent or 0 answers the gate
	// that is open.
	Round int `json:"round,omitempty"`
	// Decision is approve, reject or feedback.
	Decision string `json:"decision"`
	// Reason says why (required for reject).
	Reason string `json:"reason,omitempty"`
	// Feedback is what the extra revision round addresses (required for feedback).
	Feedback string `json:"feedback,omitempty"`
	// DecidedBy names who decided (for the record). Not "reviewer": that
	// name is an agent object in the work events (events.Summarize).
	DecidedBy string `json:"decided_by,omitempty"`
}

// NewCancel encodes a deliberation.cancel.v1 event with id for deliberation id.
func NewCancel(source, id, deliberationID, reason string, now time.Time) council.Envelope {
	return envelope(id, TypeDeliberationCancel, source, deliberationID, now, Cancel{DeliberationID: deliberationID, Reason: reason})
}

// NewCancelled encodes the end of cancelled d as a
// deliberation.cancelled.v1 event with id "<deliberation>.cancelled".
func NewCancelled(source string, d *council.Deliberation, now time.Time) council.Envelope {
	return envelope(d.ID+".cancelled", TypeDeliberationCancelled, source, d.Task.ID, now, Cancelled(endOf(d, council.StatusCancelled)))
}

// NewReviewRequested encodes the candidates of d's review gate round as a
// review.requested.v1 event with id "<deliberation>.review.<round>".
func NewReviewRequested(source string, d *council.Deliberation, round int, now time.Time) council.Envelope {
	r := d.Ranking(now)
	w := ReviewRequested{
		DeliberationID: d.ID, TaskID: d.Task.ID, Round: round, Stage: d.Stage, Deadline: d.Deadline,
		Ranking: rankingOf(r.Ranking), Failures: failuresOf(r.Failures), Usage: usageOf(r.Usage), Calls: d.Calls,
		Metadata: metadataOf(d.Task.Constraints.Metadata), Agreement: agreementOf(r),
	}
	if d.Review != nil {
		w.Stopped = d.Review.Stopped
	}
	return envelope(d.ID+".review."+strconv.Itoa(round), TypeReviewRequested, source, d.Task.ID, now, w)
}

// NewReviewDecided encodes r, a decision on deliberation id, as a
// review.decided.v1 event with id eventID.
func NewReviewDecided(source, eventID, deliberationID string, r council.ReviewDecision, now time.Time) council.Envelope {
	w := ReviewDecided{
		DeliberationID: deliberationID, Round: r.Round, Decision: string(r.Decision),
		Reason: r.Reason, Feedback: r.Feedback, DecidedBy: r.Reviewer,
	}
	return envelope(eventID, TypeReviewDecided, source, deliberationID, now, w)
}

// DecodeCancel decodes a deliberation.cancel.v1 event into the id of the
// deliberation to cancel and the reason. Errors wrap council.ErrInvalid.
func DecodeCancel(e event.Event) (deliberationID, reason string, err error) {
	var c Cancel
	if err := decode(e, TypeDeliberationCancel, MaxDataBytes, &c); err != nil {
		return "", "", err
	}
	if err := council.CheckDeliberationID(c.DeliberationID); err != nil {
		return "", "", wrap(e.Type(), err)
	}
	return c.DeliberationID, strings.TrimSpace(c.Reason), nil
}

// DecodeCancelled decodes a deliberation.cancelled.v1 event (data up to
// MaxResultBytes). Errors wrap council.ErrInvalid.
func DecodeCancelled(e event.Event) (Cancelled, error) {
	var c Cancelled
	if err := decode(e, TypeDeliberationCancelled, MaxResultBytes, &c); err != nil {
		return Cancelled{}, err
	}
	if err := council.CheckDeliberationID(c.DeliberationID); err != nil {
		return Cancelled{}, wrap(e.Type(), err)
	}
	return c, nil
}

// DecodeReviewRequested decodes a review.requested.v1 event (data up to
// MaxResultBytes). Errors wrap council.ErrInvalid.
func DecodeReviewRequested(e event.Event) (ReviewRequested, error) {
	var r ReviewRequested
	if err := decode(e, TypeReviewRequested, MaxResultBytes, &r); err != nil {
		return ReviewRequested{}, err
	}
	if err := council.CheckDeliberationID(r.DeliberationID); err != nil {
		return ReviewRequested{}, wrap(e.Type(), err)
	}
	return r, nil
}

// DecodeReviewDecided decodes a review.decided.v1 event into the
// deliberation id and the decision, checked (council.ReviewDecision.Check).
// Errors wrap council.ErrInvalid.
func DecodeReviewDecided(e event.Event) (string, council.ReviewDecision, error) {
	var w ReviewDecided
	if err := decode(e, TypeReviewDecided, MaxDataBytes, &w); err != nil {
		return "", council.ReviewDecision{}, err
	}
	if err := council.CheckDeliberationID(w.DeliberationID); err != nil {
		return "", council.ReviewDecision{}, wrap(e.Type(), err)
	}
	r := council.ReviewDecision{
		Round: w.Round, Decision: council.Decision(w.Decision), Reason: strings.TrimSpace(w.Reason),
		Feedback: strings.TrimSpace(w.Feedback), Reviewer: w.DecidedBy,
	}
	if err := r.Check(); err != nil {
		return "", council.ReviewDecision{}, wrap(e.Type(), err)
	}
	return w.DeliberationID, r, nil
}
