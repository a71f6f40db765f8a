package events

import "strings"

// Prefix is the prefix of every council event type.
const Prefix = "dev.council."

// Event types (CloudEvents "type" attribute). The version suffix changes
// only with an incompatible change of the payload.
const (
	// TypeDeliberationRequested asks execute to deliberate on a task (Request).
	TypeDeliberationRequested = Prefix + "deliberation.requested.v1"
	// TypeDeliberationAccepted is execute's reply to a request (Accepted).
	TypeDeliberationAccepted = Prefix + "deliberation.accepted.v1"
	// TypeProposalRequested asks generate for one proposal or revision (ProposalRequested).
	TypeProposalRequested = Prefix + "proposal.requested.v1"
	// TypeProposalGenerated carries a generated proposal back to execute (ProposalGenerated).
	TypeProposalGenerated = Prefix + "proposal.generated.v1"
	// TypeProposalFailed reports a failed generation to execute (ProposalFailed).
	TypeProposalFailed = Prefix + "proposal.failed.v1"
	// TypeCritiqueRequested asks critique for one peer review (CritiqueRequested).
	TypeCritiqueRequested = Prefix + "critique.requested.v1"
	// TypeCritiqueCompleted carries a critique back to execute (CritiqueCompleted).
	TypeCritiqueCompleted = Prefix + "critique.completed.v1"
	// TypeCritiqueFailed reports a failed critique to execute (CritiqueFailed).
	TypeCritiqueFailed = Prefix + "critique.failed.v1"
	// TypeDeliberationCompleted is the ranked result of a deliberation (Completed).
	TypeDeliberationCompleted = Prefix + "deliberation.completed.v1"
	// TypeDeliberationFailed ends a deliberation without a result (Failed).
	TypeDeliberationFailed = Prefix + "deliberation.failed.v1"
	// TypeSweepTick asks execute to check deadlines and Ray jobs (Tick).
	TypeSweepTick = Prefix + "sweep.tick.v1"
	// TypeDeliberationCancel asks execute to end a running deliberation (Cancel).
	TypeDeliberationCancel = Prefix + "deliberation.cancel.v1"
	// TypeDeliberationCancelled ends a deliberation a cancel stopped (Cancelled).
	TypeDeliberationCancelled = Prefix + "deliberation.cancelled.v1"
	// TypeReviewRequested asks a human to decide on the ranked candidates
	// of a deliberation waiting at its review gate (ReviewRequested).
	TypeReviewRequested = Prefix + "review.requested.v1"
	// TypeReviewDecided is a human's decision at a review gate (ReviewDecided).
	TypeReviewDecided = Prefix + "review.decided.v1"
)

// TypePing is the type of the events a Knative PingSource sends; execute
// accepts it as a sweep tick (see DecodeTick). It is not a council type and
// is not listed by Types.
const TypePing = "dev.knative.sources.ping"

// Types lists every council event type, in flow order.
func Types() []string {
	return []string{
		TypeDeliberationRequested,
		TypeDeliberationAccepted,
		TypeProposalRequested,
		TypeProposalGenerated,
		TypeProposalFailed,
		TypeCritiqueRequested,
		TypeCritiqueCompleted,
		TypeCritiqueFailed,
		TypeDeliberationCompleted,
		TypeDeliberationFailed,
		TypeSweepTick,
		TypeDeliberationCancel,
		TypeDeliberationCancelled,
		TypeReviewRequested,
		TypeReviewDecided,
	}
}

// ShortName returns eventType without the council prefix
// ("deliberation.requested.v1"), the name of its fixture directory. Other
// types (TypePing) are returned unchanged.
func ShortName(eventType string) string { return strings.TrimPrefix(eventType, Prefix) }
