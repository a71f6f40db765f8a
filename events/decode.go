package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"slices"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"council.dev/shared/council"
)

// Limits of inbound events.
const (
	// MaxDataBytes is the largest data an inbound event of the functions
	// (requests, proposals, critiques, ticks) may carry: room for a revision
	// request at the limits (a 32,768-token proposal, its critiques and the
	// task), with JSON's escapes (" and \ take 2 bytes; <, > and & are
	// not escaped), so that no accepted request has a call refused later
	// for size.
	MaxDataBytes = 4 << 20
	// MaxResultBytes is the largest data of a deliberation.completed or
	// deliberation.failed event: a result carries every proposal, so it may
	// be larger than a request, and larger than the broker takes (it then
	// goes by reference: the claim check).
	MaxResultBytes = 64 << 20 // council.MaxResultBytes (48 MiB, estimated) and JSON's escapes
)

// WorkFailure is a failed proposal or critique, as reported by
// proposal.failed.v1 (AgentID is the author) or critique.failed.v1
// (AgentID is the reviewer).
type WorkFailure struct {
	DeliberationID, Key, AgentID, Error string
	Attempt, Stage                      int
	Retryable                           bool
}

// DecodeRequest decodes a deliberation.requested.v1 event into a task with
// its defaults applied (council.Task.WithDefaults) and validated
// (council.Task.Validate). An absent max_retries means
// council.DefaultMaxRetries; an explicit 0 is kept. Errors wrap
// council.ErrInvalid.
func DecodeRequest(e event.Event) (council.Task, error) {
	var r Request
	if err := decode(e, TypeDeliberationRequested, MaxDataBytes, &r); err != nil {
		return council.Task{}, err
	}
	t, err := r.validTask()
	if err != nil {
		return council.Task{}, wrap(TypeDeliberationRequested, err)
	}
	return t, nil
}

// DecodeProposalRequested decodes a proposal.requested.v1 event. The task
// gets its defaults and is validated, and the agent must be one of its
// agents. Errors wrap council.ErrInvalid.
func DecodeProposalRequested(e event.Event) (council.ProposalRequest, error) {
	var w ProposalRequested
	if err := decode(e, TypeProposalRequested, MaxDataBytes, &w); err != nil {
		return council.ProposalRequest{}, err
	}
	r, err := w.request()
	if err != nil {
		return council.ProposalRequest{}, wrap(TypeProposalRequested, err)
	}
	return r, nil
}

func (w ProposalRequested) request() (council.ProposalRequest, error) {
	if err := checkWork(w.DeliberationID, w.Key, w.Attempt, w.Stage); err != nil {
		return council.ProposalRequest{}, err
	}
	t, err := w.Task.validTask()
	if err != nil {
		return council.ProposalRequest{}, fmt.Errorf("task: %w", err)
	}
	if err := checkMember(t, "agent.id", w.Agent.ID); err != nil {
		return council.ProposalRequest{}, err
	}
	r := council.ProposalRequest{
		DeliberationID: w.DeliberationID, Key: w.Key, Task: t, Agent: w.Agent.agent(),
		Stage: w.Stage, Attempt: w.Attempt, Deadline: w.Deadline,
	}
	if w.Previous != nil {
		if err := w.Previous.check("previous"); err != nil {
			return council.ProposalRequest{}, err
		}
		p := w.Previous.proposal()
		r.Previous = &p
	}
	for i, c := range w.Critiques {
		if err := c.check(fmt.Sprintf("critiques[%d]", i)); err != nil {
			return council.ProposalRequest{}, err
		}
		r.Critiques = append(r.Critiques, c.critique())
	}
	r.Feedback = w.ReviewFeedback
	if r.Candidates, err = candidates(w.Candidates); err != nil {
		return council.ProposalRequest{}, err
	}
	if r.Mode, err = proposalMode(w.Mode, len(r.Candidates)); err != nil {
		return council.ProposalRequest{}, err
	}
	return r, nil
}

// DecodeProposalGenerated decodes a proposal.generated.v1 event into the
// deliberation id, the work key and the proposal. An empty content is not
// rejected: the deliberation records it as a failed attempt. Errors wrap
// council.ErrInvalid.
func DecodeProposalGenerated(e event.Event) (deliberationID, key string, p council.Proposal, err error) {
	var w ProposalGenerated
	if err := decode(e, TypeProposalGenerated, MaxDataBytes, &w); err != nil {
		return "", "", council.Proposal{}, err
	}
	if err := checkWork(w.DeliberationID, w.Key, w.Attempt, w.Stage); err != nil {
		return "", "", council.Proposal{}, wrap(TypeProposalGenerated, err)
	}
	if err := w.Proposal.check("proposal"); err != nil {
		return "", "", council.Proposal{}, wrap(TypeProposalGenerated, err)
	}
	p = w.Proposal.proposal()
	p.StartedAt = w.StartedAt
	return w.DeliberationID, w.Key, p, nil
}

// DecodeCritiqueRequested decodes a critique.requested.v1 event. The task
// gets its defaults and is validated, and the reviewer must be one of its
// agents. Errors wrap council.ErrInvalid.
func DecodeCritiqueRequested(e event.Event) (council.CritiqueRequest, error) {
	var w CritiqueRequested
	if err := decode(e, TypeCritiqueRequested, MaxDataBytes, &w); err != nil {
		return council.CritiqueRequest{}, err
	}
	r, err := w.request()
	if err != nil {
		return council.CritiqueRequest{}, wrap(TypeCritiqueRequested, err)
	}
	return r, nil
}

func (w CritiqueRequested) request() (council.CritiqueRequest, error) {
	if err := checkWork(w.DeliberationID, w.Key, w.Attempt, w.Stage); err != nil {
		return council.CritiqueRequest{}, err
	}
	t, err := w.Task.validTask()
	if err != nil {
		return council.CritiqueRequest{}, fmt.Errorf("task: %w", err)
	}
	if err := checkMember(t, "reviewer.id", w.Reviewer.ID); err != nil {
		return council.CritiqueRequest{}, err
	}
	if err := w.Proposal.check("proposal"); err != nil {
		return council.CritiqueRequest{}, err
	}
	return council.CritiqueRequest{
		DeliberationID: w.DeliberationID, Key: w.Key, Task: t, Reviewer: w.Reviewer.agent(),
		Proposal: w.Proposal.proposal(), Stage: w.Stage, Attempt: w.Attempt, Deadline: w.Deadline,
	}, nil
}

// DecodeCritiqueCompleted decodes a critique.completed.v1 event into the
// deliberation id, the work key and the critique. Scores outside [0,1] are
// not rejected: the deliberation records them as a failed attempt. Errors
// wrap council.ErrInvalid.
func DecodeCritiqueCompleted(e event.Event) (deliberationID, key string, c council.Critique, err error) {
	var w CritiqueCompleted
	if err := decode(e, TypeCritiqueCompleted, MaxDataBytes, &w); err != nil {
		return "", "", council.Critique{}, err
	}
	if err := checkWork(w.DeliberationID, w.Key, w.Attempt, w.Stage); err != nil {
		return "", "", council.Critique{}, wrap(TypeCritiqueCompleted, err)
	}
	if err := w.Critique.check("critique"); err != nil {
		return "", "", council.Critique{}, wrap(TypeCritiqueCompleted, err)
	}
	c = w.Critique.critique()
	c.StartedAt = w.StartedAt
	return w.DeliberationID, w.Key, c, nil
}

// DecodeWorkFailure decodes a proposal.failed.v1 or critique.failed.v1
// event. Errors wrap council.ErrInvalid.
func DecodeWorkFailure(e event.Event) (WorkFailure, error) {
	var f WorkFailure
	switch e.Type() {
	case TypeProposalFailed:
		var w ProposalFailed
		if err := decode(e, TypeProposalFailed, MaxDataBytes, &w); err != nil {
			return WorkFailure{}, err
		}
		f = WorkFailure{DeliberationID: w.DeliberationID, Key: w.Key, AgentID: w.AgentID, Error: w.Error,
			Attempt: w.Attempt, Stage: w.Stage, Retryable: w.Retryable}
	case TypeCritiqueFailed:
		var w CritiqueFailed
		if err := decode(e, TypeCritiqueFailed, MaxDataBytes, &w); err != nil {
			return WorkFailure{}, err
		}
		f = WorkFailure{DeliberationID: w.DeliberationID, Key: w.Key, AgentID: w.ReviewerID, Error: w.Error,
			Attempt: w.Attempt, Stage: w.Stage, Retryable: w.Retryable}
	default:
		return WorkFailure{}, fmt.Errorf("events: decode: %w", council.Invalidf(
			"event type %q is not %s or %s", e.Type(), TypeProposalFailed, TypeCritiqueFailed))
	}
	field := "agent_id"
	if e.Type() == TypeCritiqueFailed {
		field = "reviewer_id"
	}
	if err := checkWork(f.DeliberationID, f.Key, f.Attempt, f.Stage); err != nil {
		return WorkFailure{}, wrap(e.Type(), err)
	}
	if !council.ValidAgentID(f.AgentID) {
		return WorkFailure{}, wrap(e.Type(), council.Invalidf("%s %q must be 1-64 letters, digits, '-' or '_'", field, f.AgentID))
	}
	return f, nil
}

// DecodeAccepted decodes a deliberation.accepted.v1 event. Errors wrap
// council.ErrInvalid.
func DecodeAccepted(e event.Event) (Accepted, error) {
	var a Accepted
	if err := decode(e, TypeDeliberationAccepted, MaxDataBytes, &a); err != nil {
		return Accepted{}, err
	}
	switch {
	case a.DeliberationID == "":
		return Accepted{}, wrap(e.Type(), council.Invalidf("deliberation_id is required"))
	case a.Status != string(council.StatusRunning) && !council.Status(a.Status).Terminal():
		return Accepted{}, wrap(e.Type(), council.Invalidf("status %q is unknown (want running, completed, failed or cancelled)", a.Status))
	}
	return a, nil
}

// DecodeCompleted decodes a deliberation.completed.v1 event (data up to
// MaxResultBytes). Errors wrap council.ErrInvalid.
func DecodeCompleted(e event.Event) (Completed, error) {
	var c Completed
	if err := decode(e, TypeDeliberationCompleted, MaxResultBytes, &c); err != nil {
		return Completed{}, err
	}
	switch {
	case c.DeliberationID == "":
		return Completed{}, wrap(e.Type(), council.Invalidf("deliberation_id is required"))
	case c.Status != string(council.StatusCompleted):
		return Completed{}, wrap(e.Type(), council.Invalidf("status %q must be %q", c.Status, council.StatusCompleted))
	}
	return c, nil
}

// DecodeFailed decodes a deliberation.failed.v1 event (data up to
// MaxResultBytes). Errors wrap council.ErrInvalid.
func DecodeFailed(e event.Event) (Failed, error) {
	var f Failed
	if err := decode(e, TypeDeliberationFailed, MaxResultBytes, &f); err != nil {
		return Failed{}, err
	}
	switch {
	case f.DeliberationID == "":
		return Failed{}, wrap(e.Type(), council.Invalidf("deliberation_id is required"))
	case f.Status != string(council.StatusFailed):
		return Failed{}, wrap(e.Type(), council.Invalidf("status %q must be %q", f.Status, council.StatusFailed))
	}
	return f, nil
}

// DecodeTick decodes a sweep.tick.v1 event, or a Knative PingSource event
// (TypePing, whose data is ignored), into the time the sweep should take as
// now: the tick's at, else the event time, else the zero time (the caller
// then uses its clock). Errors wrap council.ErrInvalid.
func DecodeTick(e event.Event) (time.Time, error) {
	switch e.Type() {
	case TypePing:
		return e.Time(), nil
	case TypeSweepTick:
		if len(e.Data()) == 0 {
			return e.Time(), nil
		}
		var t Tick
		if err := decode(e, TypeSweepTick, MaxDataBytes, &t); err != nil {
			return time.Time{}, err
		}
		if t.At.IsZero() {
			return e.Time(), nil
		}
		return t.At, nil
	}
	return time.Time{}, fmt.Errorf("events: decode: %w", council.Invalidf(
		"event type %q is not %s or %s", e.Type(), TypeSweepTick, TypePing))
}

func checkWork(deliberationID, key string, attempt, stage int) error {
	switch {
	case strings.TrimSpace(deliberationID) == "":
		return council.Invalidf("deliberation_id is required")
	case strings.TrimSpace(key) == "":
		return council.Invalidf("key is required")
	case attempt < 1:
		return council.Invalidf("attempt must be at least 1, got %d", attempt)
	case stage < 0:
		return council.Invalidf("stage must not be negative, got %d", stage)
	}
	// The ids become NATS subjects, event ids and KV keys downstream: the
	// one validator of council refuses wildcards and separators here, at
	// the edge.
	return council.CheckWorkIDs(deliberationID, key)
}

func checkMember(t council.Task, field, id string) error {
	if !slices.ContainsFunc(t.Agents, func(a council.Agent) bool { return a.ID == id }) {
		return council.Invalidf("%s %q is not one of the task's agents", field, id)
	}
	return nil
}

// wrap prefixes err, which wraps council.ErrInvalid, with the event type.
func wrap(eventType string, err error) error {
	return fmt.Errorf("events: decode %s: %w", eventType, err)
}

// decode checks e's type, content type and size, validates its data
// against the shipped schema of eventType, then decodes it strictly into v:
// no unknown fields, nothing after the object.
func decode(e event.Event, eventType string, maxBytes int, v any) error {
	if err := decodeData(e, eventType, maxBytes, v); err != nil {
		return wrap(eventType, err)
	}
	return nil
}

func decodeData(e event.Event, eventType string, maxBytes int, v any) error {
	if e.Type() != eventType {
		return council.Invalidf("event type %q is not %s", e.Type(), eventType)
	}
	if ct := e.DataContentType(); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != event.ApplicationJSON {
			return council.Invalidf("datacontenttype %q is not %s", ct, event.ApplicationJSON)
		}
	}
	data := e.Data()
	if len(data) > maxBytes {
		return council.Invalidf("data is %d bytes, more than the %d allowed", len(data), maxBytes)
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return council.Invalidf("data is empty: want a JSON object")
	}
	if trimmed[0] != '{' {
		return council.Invalidf("data must be a JSON object, got %s", jsonKind(trimmed))
	}
	if err := validate(eventType, trimmed); err != nil {
		return err
	}
	// The schema has checked the shape; the strict decode stays as a guard
	// for what a schema cannot say about the Go type (and any drift
	// between the two, which TestSchemasMatchStructs also catches).
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return council.Invalidf("data has content after the JSON object")
	}
	return nil
}

// jsonError turns an encoding/json error into an ErrInvalid that says
// which field is wrong.
func jsonError(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	var timeErr *time.ParseError
	switch {
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			field = "data"
		}
		return council.Invalidf("field %s: unexpected JSON %s", field, typeErr.Value)
	case errors.As(err, &syntaxErr):
		return council.Invalidf("data is not valid JSON: %s (at byte %d)", strings.TrimPrefix(syntaxErr.Error(), "json: "), syntaxErr.Offset)
	case errors.As(err, &timeErr):
		return council.Invalidf("a time field: expected an RFC 3339 time string, got %q", timeErr.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return council.Invalidf("data is not valid JSON: unexpected end of input")
	default:
		// Unknown fields ("json: unknown field \"x\"") and anything else.
		return council.Invalidf("data: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
}

// jsonKind names the kind of the JSON value that starts b.
func jsonKind(b []byte) string {
	switch b[0] {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	}
	if b[0] == '-' || (b[0] >= '0' && b[0] <= '9') {
		return "a number"
	}
	return "something that is not JSON"
}
