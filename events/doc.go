// Package events is the wire contract of council: the CloudEvents 1.0 types
// the functions exchange, their JSON payloads, the one codec between those
// payloads and the domain values of package council, and the published
// contract artefacts — a JSON Schema per type (schemas/), valid and invalid
// example events (fixtures/) and an AsyncAPI document (asyncapi.yaml).
//
// Every event carries JSON data (datacontenttype application/json) and has
// the task id as its subject. Inbound decoders (DecodeRequest,
// DecodeProposalRequested, …) validate the data against the shipped JSON
// Schema of its type (santhosh-tekuri/jsonschema, compiled once), then
// decode it strictly and apply the domain's own checks: they reject unknown
// fields, missing required fields, values of the wrong type or outside the
// schema's bounds, data larger than MaxDataBytes and events of another
// type, always with an error that wraps council.ErrInvalid and names the
// field at fault ("field agents[1].role is required"); they never panic.
// Outbound encoders (NewProposalRequested, NewCompleted, …) return a
// council.Envelope with a deterministic id, so a re-sent event is recognised
// as a duplicate; ToEvent turns an envelope into an sdk-go event.
//
// Durations travel as whole milliseconds (duration_ms) or seconds
// (timeout_seconds); times as RFC 3339 strings.
package events
