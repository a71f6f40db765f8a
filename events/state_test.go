package events_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"council.dev/events"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

func TestStateRoundTripsAndReadsUnversionedValues(t *testing.T) {
	d, err := council.New("dlb-state", counciltest.Task(), time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	v1, err := events.EncodeStateVersion(d, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(v1), `{"schema_version":1,"deliberation":{`) {
		t.Errorf("version 1 starts %.40q, want the version first", v1)
	}
	bare, _ := json.Marshal(d) // what builds before versions stored
	for name, b := range map[string][]byte{"version 1": v1, "unversioned": bare} {
		got, err := events.DecodeState(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if diff := cmp.Diff(d, got); diff != "" {
			t.Errorf("%s round trip (-want +got):\n%s", name, diff)
		}
	}
	if _, err := events.EncodeStateVersion(d, 2); !errors.Is(err, council.ErrInvalid) {
		t.Errorf("version 2: %v, want ErrInvalid", err)
	}
}

func TestStateRefusesWhatItCannotRead(t *testing.T) {
	for name, b := range map[string]string{
		"newer version": `{"schema_version":2,"deliberation":{"ID":"x"}}`,
		"extra field":   `{"schema_version":1,"deliberation":{"ID":"x"},"records":[]}`,
		"not JSON":      `{"schema_version":`,
		"not an object": `[1,2]`,
		"no id":         `{"schema_version":1,"deliberation":{}}`,
	} {
		if _, err := events.DecodeState([]byte(b)); !errors.Is(err, council.ErrInvalid) {
			t.Errorf("%s: error %v, want ErrInvalid", name, err)
		}
	}
	if _, err := events.DecodeState([]byte(`{"schema_version":2,"deliberation":{"ID":"x"}}`)); err == nil ||
		!strings.Contains(err.Error(), "reads version 1") {
		t.Errorf("newer version: %v, want a message saying which version this build reads", err)
	}
}
