// Package eventstest loads the events fixtures as table-test cases for the
// functions' tests.
package eventstest

import (
	"encoding/json"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"

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

// Golden compares got (a reply event) with the golden file path, after
// zeroing measured durations; with update it rewrites the file instead.
func Golden(t testing.TB, path string, got event.Event, update bool) {
	t.Helper()
	raw, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	raw = durations.ReplaceAll(raw, []byte(`"duration_ms": 0`))
	raw = append(raw, '\n')
	if update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden %s: %v (run the test with -update to create it)", path, err)
	}
	if diff := cmp.Diff(string(want), string(raw)); diff != "" {
		t.Errorf("reply differs from %s (-want +got):\n%s", path, diff)
	}
}

var durations = regexp.MustCompile(`"duration_ms":\s*[0-9]+`)
