package host_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/client"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/google/go-cmp/cmp"

	"council.dev/shared/council"
	"council.dev/shared/host"
)

// sink is a CloudEvents receiver built from sdk-go that answers status and
// records what it got.
type sink struct {
	url string

	mu      sync.Mutex
	events  []received
	times   []time.Time
	binary  []bool
	auth    []string
	answers int
}

func startSink(t *testing.T, status int) *sink {
	t.Helper()
	s := &sink{}
	p, err := cehttp.New()
	if err != nil {
		t.Fatal(err)
	}
	recv, err := cloudevents.NewHTTPReceiveHandler(t.Context(), p, func(_ context.Context, e event.Event) protocol.Result {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.events = append(s.events, summary(e))
		s.times = append(s.times, e.Time())
		s.answers++
		if status/100 == 2 {
			return cehttp.NewResult(status, "ok")
		}
		return cehttp.NewResult(status, "sink says no")
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.binary = append(s.binary, r.Header.Get("Ce-Id") != "")
		s.auth = append(s.auth, r.Header.Get("Authorization"))
		s.mu.Unlock()
		recv.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.url = srv.URL
	return s
}

func testEnvelope() council.Envelope {
	return council.Envelope{
		ID:      "d-1/proposal/agent-2",
		Type:    "dev.council.proposal.requested.v1",
		Source:  "council.dev/execute",
		Subject: "task-1",
		Time:    time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		Data:    []byte(`{"agent":"agent-2"}`),
	}
}

func TestSinkEmitterDeliversInBinaryMode(t *testing.T) {
	t.Parallel()
	s := startSink(t, http.StatusAccepted)
	em, err := host.NewSinkEmitter(s.url)
	if err != nil {
		t.Fatal(err)
	}

	if err := em.Emit(t.Context(), testEnvelope()); err != nil {
		t.Fatalf("Emit: %v", err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	want := []received{{ID: "d-1/proposal/agent-2", Type: "dev.council.proposal.requested.v1",
		Source: "council.dev/execute", Subject: "task-1", Data: `{"agent":"agent-2"}`}}
	if diff := cmp.Diff(want, s.events); diff != "" {
		t.Errorf("sink got (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]time.Time{testEnvelope().Time}, s.times); diff != "" {
		t.Errorf("event time (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]bool{true}, s.binary); diff != "" {
		t.Errorf("binary mode (-want +got):\n%s", diff)
	}
}

func TestSinkEmitterMapsStatuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status      int
		wantErr     error
		rateLimited bool
	}{
		{http.StatusOK, nil, false},
		{http.StatusAccepted, nil, false},
		{http.StatusBadRequest, council.ErrInvalid, false},
		{http.StatusUnprocessableEntity, council.ErrInvalid, false},
		{http.StatusRequestEntityTooLarge, council.ErrTooLarge, false},
		{http.StatusNotFound, council.ErrUnavailable, false}, // Knative retries 404 and 409
		{http.StatusConflict, council.ErrUnavailable, false},
		{http.StatusTooManyRequests, council.ErrUnavailable, true},
		{http.StatusInternalServerError, council.ErrUnavailable, false},
		{http.StatusServiceUnavailable, council.ErrUnavailable, false},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			t.Parallel()
			s := startSink(t, tt.status)
			em, err := host.NewSinkEmitter(s.url)
			if err != nil {
				t.Fatal(err)
			}

			err = em.Emit(t.Context(), testEnvelope())

			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Emit = %v, want %v", err, tt.wantErr)
			}
			if got := errors.Is(err, host.ErrRateLimited); got != tt.rateLimited {
				t.Errorf("errors.Is(%v, ErrRateLimited) = %v, want %v", err, got, tt.rateLimited)
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.answers != 1 {
				t.Errorf("sink answered %d times, want 1 (no retries)", s.answers)
			}
		})
	}
}

func TestSinkEmitterUnreachableSinkIsUnavailable(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	em, err := host.NewSinkEmitter(url)
	if err != nil {
		t.Fatal(err)
	}

	err = em.Emit(t.Context(), testEnvelope())

	if !errors.Is(err, council.ErrUnavailable) {
		t.Errorf("Emit = %v, want an error wrapping ErrUnavailable", err)
	}
}

func TestSinkEmitterRejectsInvalidEnvelope(t *testing.T) {
	t.Parallel()
	s := startSink(t, http.StatusOK)
	em, err := host.NewSinkEmitter(s.url)
	if err != nil {
		t.Fatal(err)
	}
	env := testEnvelope()
	env.Type = ""

	err = em.Emit(t.Context(), env)

	if !errors.Is(err, council.ErrInvalid) {
		t.Errorf("Emit = %v, want an error wrapping ErrInvalid", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.answers != 0 {
		t.Errorf("an invalid envelope reached the sink")
	}
}

func TestNewSinkEmitterRejectsBadTarget(t *testing.T) {
	t.Parallel()
	for _, target := range []string{"", "broker-ingress", "nats://x:4222"} {
		if _, err := host.NewSinkEmitter(target); !errors.Is(err, council.ErrInvalid) {
			t.Errorf("NewSinkEmitter(%q) = %v, want an error wrapping ErrInvalid", target, err)
		}
	}
	if _, err := host.NewSinkEmitter("http://x", host.WithHTTPClient(nil)); !errors.Is(err, council.ErrInvalid) {
		t.Errorf("WithHTTPClient(nil): err = %v, want ErrInvalid", err)
	}
}

// TestSinkEmitterSendsTheSinkBindingToken: with Eventing's OIDC on, a
// SinkBinding mounts a token for the sink's audience and rotates it in
// place; the emitter reads it before each request. Without the file (the
// feature off) it sends no Authorization header. The broker ingress that
// demands the token is Eventing's (scripts/cluster.sh, COUNCIL_CLUSTER_OIDC).
func TestSinkEmitterSendsTheSinkBindingToken(t *testing.T) {
	t.Parallel()
	s := startSink(t, http.StatusAccepted)
	file := filepath.Join(t.TempDir(), "token")
	em, err := host.NewSinkEmitter(s.url, host.WithSinkTokenFile(file))
	if err != nil {
		t.Fatal(err)
	}
	emit := func() {
		t.Helper()
		if err := em.Emit(t.Context(), testEnvelope()); err != nil {
			t.Fatalf("Emit: %v", err)
		}
	}
	emit() // no file yet
	for _, tok := range []string{"first.jwt\n", "rotated.jwt"} {
		if err := os.WriteFile(file, []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
		emit()
	}
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	emit() // empty file: not mounted yet

	s.mu.Lock()
	defer s.mu.Unlock()
	want := []string{"", "Bearer first.jwt", "Bearer rotated.jwt", ""}
	if diff := cmp.Diff(want, s.auth); diff != "" {
		t.Errorf("Authorization headers (-want +got):\n%s", diff)
	}
}

func TestSinkEmitterUnreadableTokenIsUnavailable(t *testing.T) {
	t.Parallel()
	s := startSink(t, http.StatusAccepted)
	em, err := host.NewSinkEmitter(s.url, host.WithSinkTokenFile(t.TempDir())) // a directory: read fails
	if err != nil {
		t.Fatal(err)
	}
	if err := em.Emit(t.Context(), testEnvelope()); !errors.Is(err, council.ErrUnavailable) {
		t.Errorf("Emit = %v, want an error wrapping ErrUnavailable", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.answers != 0 {
		t.Errorf("the sink got %d requests without the token; want none", s.answers)
	}
}
