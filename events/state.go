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
	// The versioned form starts with its version (EncodeStateVersion writes
	// it first); peeking at the first key spares the unversioned values,
	// still the common case, a second parse of the whole state.
	versioned, err := firstKeyIsVersion(b)
	if err != nil {
		return nil, fmt.Errorf("events: decode state: %w: %w", council.ErrInvalid, err)
	}
	body := b
	if versioned {
		var s storedState
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			return nil, fmt.Errorf("events: decode state: %w: %w", council.ErrInvalid, err)
		}
		if s.SchemaVersion != StateSchemaVersion {
			return nil, fmt.Errorf("events: decode state: %w", council.Invalidf(
				"schema_version %d: this build reads version %d (and unversioned state)", s.SchemaVersion, StateSchemaVersion))
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

// firstKeyIsVersion reports whether the JSON object b starts with the key
// schema_version, reading only its first tokens.
func firstKeyIsVersion(b []byte) (bool, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return false, fmt.Errorf("stored state is not a JSON object")
	}
	tok, err := dec.Token()
	if err != nil {
		return false, err
	}
	return tok == "schema_version", nil
}
