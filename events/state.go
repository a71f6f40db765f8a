package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"council.dev/shared/council"
)

// StateSchemaVersion is the stored deliberation format this build writes
// (StateCodec: a header and records, schemas/state.deliberation.v2.json).
// It reads it, version 1 (schemas/state.deliberation.v1.json) and the
// unversioned values written before versions.
const StateSchemaVersion = 2

// storedState is the stored form of a deliberation, version 1: the version
// and the deliberation. The deliberation's own fields are, in version 1,
// those of council.Deliberation as encoding/json writes them; the state that
// scales (records instead of one value) will be version 2.
type storedState struct {
	SchemaVersion int             `json:"schema_version"`
	Deliberation  json.RawMessage `json:"deliberation"`
}

// EncodeStateVersion returns the stored form of d in one of the formats
// before records: 0 (unversioned) or 1, for tests that check this build
// still reads what older ones wrote. An error wraps council.ErrInvalid.
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
	return nil, council.Invalidf("state format version %d: EncodeStateVersion writes 0 or 1 (StateCodec writes %d)", version, StateSchemaVersion)
}

// DecodeState reads a stored deliberation written whole: version 1, or the unversioned
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
		if s.SchemaVersion != 1 {
			return nil, fmt.Errorf("events: decode state: %w", council.Invalidf(
				"schema_version %d: DecodeState reads version 1 and unversioned state (StateCodec reads %d)", s.SchemaVersion, StateSchemaVersion))
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

// Quarantine records a stored deliberation set aside because its value
// does not decode (natsjs keeps it under "quarantine.<id>").
type Quarantine struct {
	ID     string    `json:"id"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// EncodeQuarantine returns the stored form of q.
func EncodeQuarantine(q Quarantine) ([]byte, error) {
	b, err := json.Marshal(q)
	if err != nil {
		return nil, council.Invalidf("encode quarantine record of %s: %v", q.ID, err)
	}
	return b, nil
}

// DecodeQuarantine reads a quarantine record. An error wraps
// council.ErrInvalid.
func DecodeQuarantine(b []byte) (Quarantine, error) {
	var q Quarantine
	if err := json.Unmarshal(b, &q); err != nil {
		return Quarantine{}, council.Invalidf("quarantine record: %v", err)
	}
	return q, nil
}

// tallyV1 is the stored form of council.Tally (natsjs keeps it under
// "stats.tally"): counts, the sum of execution times in nanoseconds, the
// histogram with its bucket bounds in milliseconds (so that a reader with
// other bounds can tell), and the ids of the last ends counted.
type tallyV1 struct {
	SchemaVersion int      `json:"schema_version"`
	Completed     int64    `json:"completed"`
	Failed        int64    `json:"failed"`
	TotalNS       int64    `json:"total_ns"`
	BoundsMS      []int64  `json:"bounds_ms"`
	Buckets       []int64  `json:"buckets"`
	Recent        []string `json:"recent"`
}

// EncodeTally returns the stored form of t.
func EncodeTally(t council.Tally) ([]byte, error) {
	v := tallyV1{
		SchemaVersion: 1, Completed: t.Completed, Failed: t.Failed, TotalNS: int64(t.Total),
		Buckets: t.Buckets, Recent: t.Recent,
	}
	for _, b := range council.TallyBounds {
		v.BoundsMS = append(v.BoundsMS, b.Milliseconds())
	}
	if v.Buckets == nil {
		v.Buckets = []int64{}
	}
	if v.Recent == nil {
		v.Recent = []string{}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, council.Invalidf("encode tally: %v", err)
	}
	return b, nil
}

// DecodeTally reads a stored tally. A histogram with other bounds than
// this build's is dropped (counts and means stay). An error wraps
// council.ErrInvalid.
func DecodeTally(b []byte) (council.Tally, error) {
	var v tallyV1
	if err := json.Unmarshal(b, &v); err != nil {
		return council.Tally{}, council.Invalidf("stored tally: %v", err)
	}
	if v.SchemaVersion != 1 {
		return council.Tally{}, council.Invalidf("stored tally: schema_version %d, want 1", v.SchemaVersion)
	}
	t := council.Tally{Completed: v.Completed, Failed: v.Failed, Total: time.Duration(v.TotalNS), Recent: v.Recent}
	same := len(v.BoundsMS) == len(council.TallyBounds) && len(v.Buckets) == len(council.TallyBounds)+1
	for i := 0; same && i < len(v.BoundsMS); i++ {
		same = v.BoundsMS[i] == council.TallyBounds[i].Milliseconds()
	}
	if same {
		t.Buckets = v.Buckets
	}
	return t, nil
}
