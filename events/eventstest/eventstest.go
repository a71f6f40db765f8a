// Package eventstest loads the events fixtures as table-test cases for the
// functions' tests.
package eventstest

import (
	"io/fs"
	"path"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"

	"council.dev/events"
)

// Case is one fixture: its name, the event, and for an invalid fixture the
// substring its error must contain.
type Case struct {
	Name   string
	Event  event.Event
	Expect string
}

// Load returns the event of the fixture at p (relative to events.Fixtures).
func Load(t testing.TB, p string) event.Event {
	t.Helper()
	e, err := events.LoadFixture(p)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// Cases returns the fixtures of dir, e.g. "proposal.requested.v1/invalid".
// It fails the test when dir holds none.
func Cases(t testing.TB, dir string) []Case {
	t.Helper()
	entries, err := fs.ReadDir(events.Fixtures(), dir)
	if err != nil {
		t.Fatalf("fixtures %s: %v", dir, err)
	}
	var out []Case
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		c := Case{Name: name, Event: Load(t, path.Join(dir, e.Name()))}
		if b, err := fs.ReadFile(events.Fixtures(), path.Join(dir, name+".expect")); err == nil {
			c.Expect = strings.TrimSpace(string(b))
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		t.Fatalf("fixtures %s: none", dir)
	}
	return out
}
