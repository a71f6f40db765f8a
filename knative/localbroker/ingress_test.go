package localbroker

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// streamMessages is the number of events persisted in the broker's stream.
func streamMessages(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), "KN_BROKER_council_council")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// TestIngressPersistsBeforeAccepting posts binary and structured events at
// both ingress paths: each is answered 202 and is in the stream by then.
func TestIngressPersistsBeforeAccepting(t *testing.T) {
	e := startBroker(t, manifestsWith(), noRefs)
	root := strings.TrimSuffix(e.URL(), "/council/council") + "/"
	tests := []struct {
		name       string
		url        string
		structured bool
	}{
		{"binary", e.URL(), false},
		{"structured", e.URL(), true},
		{"binary at /", root, false},
		{"structured at /", root, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code := post(t, tt.url, newEvent(tt.name, "dev.council.test.v1"), tt.structured); code != http.StatusAccepted {
				t.Fatalf("status %d; want 202", code)
			}
			if n := streamMessages(t, e.js); n != uint64(i+1) {
				t.Errorf("stream holds %d events after the 202; want %d", n, i+1)
			}
		})
	}
}

// TestIngressRejectsWhatIsNotACloudEvent checks the 4xx answers: they
// persist nothing.
func TestIngressRejectsWhatIsNotACloudEvent(t *testing.T) {
	e := startBroker(t, manifestsWith(), noRefs)
	noID := `{"specversion":"1.0","type":"dev.council.test.v1","source":"x"}`
	tests := []struct {
		name, url, contentType, body string
		want                         int
	}{
		{"plain JSON", e.URL(), "application/json", `{"hello":"world"}`, http.StatusBadRequest},
		{"structured without id", e.URL(), "application/cloudevents+json", noID, http.StatusBadRequest},
		{"malformed structured", e.URL(), "application/cloudevents+json", `{"specversion":`, http.StatusBadRequest},
		{"another broker", strings.Replace(e.URL(), "/council/council", "/council/other", 1), "application/json", "{}", http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code := postRaw(t, tt.url, tt.contentType, []byte(tt.body)); code != tt.want {
				t.Errorf("status %d; want %d", code, tt.want)
			}
		})
	}
	if n := streamMessages(t, e.js); n != 0 {
		t.Errorf("stream holds %d events; want none", n)
	}
}

// TestIngressFailsWithoutNATS stops the NATS server: the ingress answers
// 500, never 202, for an event it cannot persist.
func TestIngressFailsWithoutNATS(t *testing.T) {
	e := startBroker(t, manifestsWith(), noRefs, WithPublishTimeout(300*time.Millisecond))
	mustPost(t, e.URL(), newEvent("before", "dev.council.test.v1"))
	e.srv.Shutdown()
	if code := post(t, e.URL(), newEvent("after", "dev.council.test.v1"), false); code != http.StatusInternalServerError {
		t.Errorf("status %d with NATS down; want 500", code)
	}
}
