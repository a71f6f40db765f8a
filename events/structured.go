package events

import (
	"encoding/json"
	"fmt"

	"github.com/cloudevents/sdk-go/v2/event"

	"council.dev/shared/council"
)

// ContentTypeStructured is the media type of a CloudEvent in structured
// mode with the JSON event format: the whole event, attributes and data,
// as one JSON object.
const ContentTypeStructured = "application/cloudevents+json"

// EncodeStructured writes ev in structured mode (the JSON event format of
// CloudEvents 1.0), as the broker carries it and as a Ray job receives its
// request. It returns an error wrapping council.ErrInvalid when ev is not a
// valid CloudEvent.
func EncodeStructured(ev event.Event) ([]byte, error) {
	if err := ev.Validate(); err != nil {
		return nil, council.Invalidf("not a valid CloudEvent: %v", err)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, council.Invalidf("encode CloudEvent %s: %v", ev.ID(), err)
	}
	return b, nil
}

// DecodeStructured reads one CloudEvent in structured mode and checks its
// attributes (specversion, id, source, type). Its error wraps
// council.ErrInvalid and says what is wrong: the bytes are not such an
// event, or a required attribute is missing or malformed. The data is not
// looked at here; the Decode functions of each type do that.
func DecodeStructured(b []byte) (event.Event, error) {
	var ev event.Event
	if err := json.Unmarshal(b, &ev); err != nil {
		return event.Event{}, council.Invalidf("not a structured CloudEvent: %v", err)
	}
	if err := ev.Validate(); err != nil {
		return event.Event{}, council.Invalidf("invalid CloudEvent %q: %v", ev.ID(), err)
	}
	return ev, nil
}

// EncodeEnvelope is CheckedEvent followed by EncodeStructured: the bytes
// of e in structured mode.
func EncodeEnvelope(e council.Envelope) ([]byte, error) {
	ev, err := CheckedEvent(e)
	if err != nil {
		return nil, err
	}
	b, err := EncodeStructured(ev)
	if err != nil {
		return nil, fmt.Errorf("envelope %s: %w", e.ID, err)
	}
	return b, nil
}
