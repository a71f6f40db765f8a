package events

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"

	"github.com/cloudevents/sdk-go/v2/event"
)

//go:embed schemas/*.json
var schemas embed.FS

//go:embed fixtures
var fixtures embed.FS

// Schema returns the JSON Schema (draft 2020-12) of the data of eventType,
// one of Types, and whether there is one.
func Schema(eventType string) ([]byte, bool) {
	b, err := schemas.ReadFile("schemas/" + eventType + ".json")
	if err != nil {
		return nil, false
	}
	return b, true
}

// Fixtures returns the example events: a directory per event type, named
// by ShortName (plus dev.knative.sources.ping), each with a valid/ and an
// invalid/ directory of structured-mode CloudEvents in JSON. Every invalid
// event has a sidecar <name>.expect file holding a substring of the error
// the decoder returns for it.
func Fixtures() fs.FS {
	sub, err := fs.Sub(fixtures, "fixtures")
	if err != nil {
		// Unreachable: "fixtures" is a valid, embedded directory.
		return fixtures
	}
	return sub
}

// LoadFixture reads the event at path in Fixtures, for example
// "deliberation.requested.v1/valid/deliberation.json".
func LoadFixture(path string) (event.Event, error) {
	b, err := fs.ReadFile(Fixtures(), path)
	if err != nil {
		return event.Event{}, fmt.Errorf("events: fixture %s: %w", path, err)
	}
	var e event.Event
	if err := json.Unmarshal(b, &e); err != nil {
		return event.Event{}, fmt.Errorf("events: fixture %s: not a structured CloudEvent: %w", path, err)
	}
	return e, nil
}
