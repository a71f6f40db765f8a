package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"

	"council.dev/shared/council"
)

// MaxErrorBytes caps the error message of a proposal.failed or
// critique.failed event; a longer message is cut (an LLM server may answer
// with a whole page).
const MaxErrorBytes = 2048

// NewRequest encodes t as a deliberation.requested.v1 event with id (the
// CLI and tests send requests). The task is encoded as given: defaults
// are applied by the decoder.
func NewRequest(source, id string, t council.Task, now time.Time) council.Envelope {
	return envelope(id, TypeDeliberationRequested, source, t.ID, now, requestOf(t))
}

// NewTick encodes a sweep.tick.v1 event with id, at now.
func NewTick(source, id string, now time.Time) council.Envelope {
	return envelope(id, TypeSweepTick, source, "", now, Tick{At: now})
}

// NewProposalRequested encodes r as a proposal.requested.v1 event with id
// "<deliberation>.<key>.<attempt>".
func NewProposalRequested(source string, r council.ProposalRequest, now time.Time) council.Envelope {
	w := ProposalRequested{
		DeliberationID: r.DeliberationID, Key: r.Key, Attempt: r.Attempt, Stage: r.Stage,
		Task: requestOf(r.Task), Agent: agentOf(r.Agent), Deadline: r.Deadline.UTC(),
	}
	if r.Previous != nil {
		w.Previous = ptr(proposalOf(*r.Previous))
	}
	if len(r.Critiques) > 0 {
		w.Critiques = critiquesOf(r.Critiques)
	}
	w.ReviewFeedback = r.Feedback
	w.Mode, w.Candidates = string(r.Mode), candidatesOf(r.Candidates)
	return envelope(workID(r.DeliberationID, r.Key, r.Attempt, ""), TypeProposalRequested, source, r.Task.ID, now, w)
}

// NewCritiqueRequested encodes r as a critique.requested.v1 event with id
// "<deliberation>.<key>.<attempt>".
func NewCritiqueRequested(source string, r council.CritiqueRequest, now time.Time) council.Envelope {
	w := CritiqueRequested{
		DeliberationID: r.DeliberationID, Key: r.Key, Attempt: r.Attempt, Stage: r.Stage,
		Task: requestOf(r.Task), Reviewer: agentOf(r.Reviewer), Proposal: proposalOf(r.Proposal), Deadline: r.Deadline.UTC(),
	}
	return envelope(workID(r.DeliberationID, r.Key, r.Attempt, ""), TypeCritiqueRequested, source, r.Task.ID, now, w)
}

// NewProposalGenerated encodes p, the answer to r, as a
// proposal.generated.v1 event with id "<deliberation>.<key>.<attempt>.generated".
func NewProposalGenerated(source string, r council.ProposalRequest, p council.Proposal, now time.Time) council.Envelope {
	w := ProposalGenerated{
		DeliberationID: r.DeliberationID, Key: r.Key, Attempt: r.Attempt, Stage: r.Stage, Proposal: proposalOf(p),
		StartedAt: p.StartedAt.UTC(),
	}
	return envelope(workID(r.DeliberationID, r.Key, r.Attempt, "generated"), TypeProposalGenerated, source, r.Task.ID, now, w)
}

// NewProposalFailed encodes err, the failure of r, as a proposal.failed.v1
// event with id "<deliberation>.<key>.<attempt>.failed"; retryable is
// council.Retryable(err).
func NewProposalFailed(source string, r council.ProposalRequest, err error, now time.Time) council.Envelope {
	w := ProposalFailed{
		DeliberationID: r.DeliberationID, Key: r.Key, Attempt: r.Attempt, Stage: r.Stage,
		AgentID: r.Agent.ID, Error: errorText(err), Retryable: council.Retryable(err),
	}
	return envelope(workID(r.DeliberationID, r.Key, r.Attempt, "failed"), TypeProposalFailed, source, r.Task.ID, now, w)
}

// NewCritiqueCompleted encodes c, the answer to r, as a
// critique.completed.v1 event with id "<deliberation>.<key>.<attempt>.completed".
func NewCritiqueCompleted(source string, r council.CritiqueRequest, c council.Critique, now time.Time) council.Envelope {
	w := CritiqueCompleted{
		DeliberationID: r.DeliberationID, Key: r.Key, Attempt: r.Attempt, Stage: r.Stage, Critique: critiqueOf(c),
		StartedAt: c.StartedAt.UTC(),
	}
	return envelope(workID(r.DeliberationID, r.Key, r.Attempt, "completed"), TypeCritiqueCompleted, source, r.Task.ID, now, w)
}

// NewCritiqueFailed encodes err, the failure of r, as a critique.failed.v1
// event with id "<deliberation>.<key>.<attempt>.failed"; retryable is
// council.Retryable(err).
func NewCritiqueFailed(source string, r council.CritiqueRequest, err error, now time.Time) council.Envelope {
	w := CritiqueFailed{
		DeliberationID: r.DeliberationID, Key: r.Key, Attempt: r.Attempt, Stage: r.Stage,
		ReviewerID: r.Reviewer.ID, Error: errorText(err), Retryable: council.Retryable(err),
	}
	return envelope(workID(r.DeliberationID, r.Key, r.Attempt, "failed"), TypeCritiqueFailed, source, r.Task.ID, now, w)
}

// NewAccepted encodes the reply to the request of d as a
// deliberation.accepted.v1 event with id "<deliberation>.accepted".
func NewAccepted(source string, d *council.Deliberation, now time.Time) council.Envelope {
	w := Accepted{DeliberationID: d.ID, TaskID: d.Task.ID, Status: string(d.Status), Backend: string(d.Task.Backend)}
	return envelope(d.ID+".accepted", TypeDeliberationAccepted, source, d.Task.ID, now, w)
}

// NewCompleted encodes d.Result as a deliberation.completed.v1 event with
// id "<deliberation>.completed". For the structured kinds the winner's
// content, when it is JSON, is also given parsed as output.
func NewCompleted(source string, d *council.Deliberation, now time.Time) council.Envelope {
	return envelope(d.ID+".completed", TypeDeliberationCompleted, source, d.Task.ID, now, CompletedOf(d))
}

// CompletedOf is the data of completed d's deliberation.completed.v1
// event (NewCompleted); the ranking query answers it for a ranking
// recomputed (council.Rerank).
func CompletedOf(d *council.Deliberation) Completed {
	var r council.Result
	if d.Result != nil {
		r = *d.Result
	}
	w := Completed{
		DeliberationID: d.ID, TaskID: d.Task.ID, Kind: string(d.Task.Kind), Backend: string(d.Task.Backend),
		Status: string(council.StatusCompleted), Winner: r.Winner, Ranking: rankingOf(r.Ranking),
		History: proposalsOf(r.History), Reviews: critiquesOf(r.Reviews), Failures: failuresOf(r.Failures),
		Usage: usageOf(r.Usage), DurationMS: r.Duration.Milliseconds(),
		StartedAt: d.StartedAt, FinishedAt: d.FinishedAt, Metadata: metadataOf(d.Task.Constraints.Metadata),
		Calls: d.Calls, Stopped: r.Stopped,
		Protocol: string(r.Protocol), RoundsRun: r.RoundsRun, Votes: votesOf(r.Votes), Final: finalOf(r.Final),
		Aggregation: string(r.Aggregation), Agreement: agreementOf(r),
		PromptCache: PromptCache{CachedTokenShare: r.PromptCache.CachedTokenShare, SharedPrefixShare: r.PromptCache.SharedPrefixShare},
	}
	if d.Task.Kind.SinglePass() {
		for _, rk := range r.Ranking {
			if rk.Proposal.AgentID == r.Winner {
				w.Output = structuredOutput(rk.Proposal.Content)
				break
			}
		}
	}
	return w
}

// NewFailed encodes the end of d, with d.Reason, as a
// deliberation.failed.v1 event with id "<deliberation>.failed". Usage sums
// the calls that were made.
func NewFailed(source string, d *council.Deliberation, now time.Time) council.Envelope {
	return envelope(d.ID+".failed", TypeDeliberationFailed, source, d.Task.ID, now, endOf(d, council.StatusFailed))
}

// endOf is the data of d ended with status and d.Reason, without a result
// (failed or cancelled): what it spent and who failed.
func endOf(d *council.Deliberation, status council.Status) Failed {
	var dur time.Duration
	if !d.FinishedAt.IsZero() && !d.StartedAt.IsZero() {
		dur = d.FinishedAt.Sub(d.StartedAt)
	}
	return Failed{
		DeliberationID: d.ID, TaskID: d.Task.ID, Kind: string(d.Task.Kind), Backend: string(d.Task.Backend),
		Status: string(status), Reason: d.Reason, Failures: failuresOf(d.Failures),
		Usage: usageOf(d.Spent()), DurationMS: dur.Milliseconds(), StartedAt: d.StartedAt, FinishedAt: d.FinishedAt,
		Metadata: metadataOf(d.Task.Constraints.Metadata), Calls: d.Calls,
	}
}

// CheckedEvent is ToEvent for the emitters (the JetStream publisher, the
// K_SINK emitter): it refuses, with an error wrapping council.ErrInvalid, an
// envelope without an id, a type or a source, with data that is not JSON, or
// that does not make a valid CloudEvent. It is the one envelope → CloudEvent
// conversion every emitter uses.
func CheckedEvent(e council.Envelope) (event.Event, error) {
	if e.ID == "" || e.Type == "" || e.Source == "" {
		return event.Event{}, council.Invalidf("envelope needs an id, a type and a source (id %q, type %q, source %q)", e.ID, e.Type, e.Source)
	}
	if len(e.Data) > 0 && !json.Valid(e.Data) {
		return event.Event{}, council.Invalidf("envelope %s: data is not JSON", e.ID)
	}
	ev := ToEvent(e)
	if err := ev.Validate(); err != nil {
		return event.Event{}, council.Invalidf("envelope %s: %v", e.ID, err)
	}
	return ev, nil
}

// ToEvent turns e into a CloudEvents 1.0 event with JSON data.
func ToEvent(e council.Envelope) event.Event {
	ev := event.New(event.CloudEventsVersionV1)
	ev.SetID(e.ID)
	ev.SetType(e.Type)
	ev.SetSource(e.Source)
	if e.Subject != "" {
		ev.SetSubject(e.Subject)
	}
	if !e.Time.IsZero() {
		ev.SetTime(e.Time)
	}
	ev.SetDataContentType(event.ApplicationJSON)
	if len(e.Data) > 0 {
		// Raw JSON, not base64: SetData would mark []byte as binary.
		ev.DataEncoded = append([]byte(nil), e.Data...)
		ev.DataBase64 = false
	}
	// The CloudEvents distributed-tracing extension: the W3C trace
	// context the event continues, when the sender has one.
	if e.TraceParent != "" {
		ev.SetExtension(ExtTraceParent, e.TraceParent)
		if e.TraceState != "" {
			ev.SetExtension(ExtTraceState, e.TraceState)
		}
	}
	return ev
}

// The CloudEvents distributed-tracing extension attributes
// (https://github.com/cloudevents/spec/blob/main/cloudevents/extensions/distributed-tracing.md):
// the W3C traceparent and tracestate of the trace an event belongs to.
const (
	ExtTraceParent = "traceparent"
	ExtTraceState  = "tracestate"
)

func envelope(id, eventType, source, subject string, now time.Time, data any) council.Envelope {
	b, err := marshalPlain(data)
	if err != nil {
		// Unreachable: payloads hold strings, integers, finite floats,
		// times and compacted JSON. Nil data is rejected by every decoder.
		b = nil
	}
	return council.Envelope{ID: id, Type: eventType, Source: source, Subject: subject, Time: now, Data: b}
}

// marshalPlain is json.Marshal without the HTML escaping of <, > and &
// (\u003c: 6 bytes for 1): proposals are full of code and markup, and an
// event is not HTML. The bytes are valid JSON for every reader.
func marshalPlain(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func workID(deliberation, key string, attempt int, suffix string) string {
	id := fmt.Sprintf("%s.%s.%d", deliberation, key, attempt)
	if suffix != "" {
		id += "." + suffix
	}
	return id
}

func errorText(err error) string {
	if err == nil {
		return "unknown error"
	}
	s := err.Error()
	if len(s) <= MaxErrorBytes {
		return s
	}
	cut := MaxErrorBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
