package events

import (
	"bytes"
	"encoding/json"
	"fmt"

	"council.dev/shared/council"
)

// StateSchemaVersion is the newest stored deliberation format this build
// reads (schemas/state.deliberation.v1.json).
const StateSchemaVersion = 1

// StateWriteVersion is the format EncodeState writes: 0, the unversioned
// value, for now. Builds before this one read only that, and during a
// rollout (a Knative revision, pods of both builds) they read what this one
// writes: a version they cannot read would be misread and written back. The
// next build, once no older one runs, writes version 1 (expand, then
// contract: readers first, writers after).
const StateWriteVersion = 0

// storedState is the stored form of a deliberation, version 1: the version
// and the deliberation. The deliberation's own fields are, in version 1,
// those of council.Deliberation as encoding/json writes them; the state that
// scales (records instead of one value) will be version 2.
type storedState struct {
	SchemaVersion int             `json:"schema_version"`
	Deliberation  json.RawMessage `json:"deliberation"`
}

// EncodeState returns the stored form of d (the value execute keeps in the
// KV bucket) in StateWriteVersion. An error wraps council.ErrInvalid.
func EncodeState(d *council.Deliberation) ([]byte, error) {
	return EncodeStateVersion(d, StateWriteVersion)
}

// EncodeStateVersion returns the stored form of d in format version: 0
// (unversioned) or 1. An error wraps council.ErrInvalid.
func EncodeStateVersion(d *council.Deliberation, version int) ([]byte, error) {
	if d == nil {
		return nil, council.Invalidf("nil deliberation")
	}
	body, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("events: encode state of %s: %w: %w", d.ID, council.ErrInvalid, err)
	}
	switch version {
	case 0:
		return body, nil
	case 1:
		return json.Marshal(storedState{SchemaVersion: 1, Deliberation: body})
	}
	return nil, council.Invalidf("state format version %d is unknown (want 0 or %d)", version, StateSchemaVersion)
}

// DecodeState reads a stored deliberation: version 1, or the unversioned
// value that builds before versions wrote (the bare deliberation object),
// which running systems still hold. A newer version than this build knows,
// or a value that does not decode, is an error wrapping council.ErrInvalid.
func DecodeState(b []byte) (*council.Deliberation, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("events: decode state: %w: %w", council.ErrInvalid, err)
	}
	body := b
	if raw, ok := probe["schema_version"]; ok {
		var s storedState
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			return nil, fmt.Errorf("events: decode state: %w: %w", council.ErrInvalid, err)
		}
		if s.SchemaVersion != StateSchemaVersion {
			return nil, fmt.Errorf("events: decode state: %w", council.Invalidf(
				"schema_version %s: this build reads version %d (and unversioned state)", raw, StateSchemaVersion))
		}
		body = s.Deliberation
	}
	var d council.Deliberation
	if err := json.Unmarshal(body, &d); err != nil {
		return nil, fmt.Errorf("events: decode state: %w: %w", council.ErrInvalid, err)
	}
	if d.ID == "" {
		return nil, fmt.Errorf("events: decode state: %w", council.Invalidf("no deliberation id"))
	}
	return &d, nil
}
