package host_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/adapters/natsjs/natstest"
	"council.dev/shared/council"
	"council.dev/shared/host"
)

// bindConfig is the configuration of a function on srvURL that binds to
// the topology (COUNCIL_NATS_SETUP=bind) and listens on port.
func bindConfig(t *testing.T, srvURL string, port int) host.Config {
	t.Helper()
	cfg, err := host.LoadConfig(func(k string) string {
		switch k {
		case "PORT":
			return fmt.Sprint(port)
		case "COUNCIL_NATS_URL":
			return srvURL
		case "COUNCIL_NATS_SETUP":
			return "bind"
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// connectInit is an Init that binds (or sets up) with ConnectNATS and
// serves a handler that answers nothing, counting its calls.
func connectInit(cfg host.Config, calls *int) host.Init {
	return func(ctx context.Context) (host.Function, error) {
		*calls++
		nc, js, err := host.ConnectNATS(ctx, cfg, "fn")
		if err != nil {
			return host.Function{}, err
		}
		return host.Function{Handle: func(context.Context, event.Event) (*event.Event, error) { return nil, nil },
			JetStream: js, Close: nc.Close}, nil
	}
}

// TestRunGivesUpWhenTheTopologyIsMissing: a function that binds to a NATS
// where nothing was set up stops at once with a permanent error that names
// what is missing and `council setup`, instead of retrying forever.
func TestRunGivesUpWhenTheTopologyIsMissing(t *testing.T) {
	srv := natstest.StartServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := bindConfig(t, srv.ClientURL(), freePort(t))
	calls := 0
	var logs bytes.Buffer
	err := host.Run(ctx, cfg, "fn", nil, connectInit(cfg, &calls), slog.New(slog.NewJSONHandler(&logs, nil)))
	if err == nil || council.Retryable(err) || !errors.Is(err, council.ErrInvalid) {
		t.Fatalf("Run = %v, want a permanent ErrInvalid", err)
	}
	for _, want := range []string{"cannot start", "stream COUNCIL_EVENTS missing", "bucket council-deliberations missing", "run `council setup`"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Run's error %q does not say %q", err, want)
		}
	}
	if calls != 1 {
		t.Errorf("init called %d times, want 1: a missing topology is not retried", calls)
	}
}

// TestBindRefusesAnIncompatibleStream: a token stream that exists but
// captures other subjects is named, with why, and nothing is changed.
func TestBindRefusesAnIncompatibleStream(t *testing.T) {
	srv, _, js := natstest.Start(t)
	ctx := t.Context()
	if err := host.SetupNATS(ctx, bindConfig(t, srv.ClientURL(), 1), "setup", new(bytes.Buffer)); err != nil {
		t.Fatal(err)
	}
	if _, err := js.UpdateStream(ctx, jetstream.StreamConfig{
		Name: natsjs.DefaultTokensStream, Subjects: []string{"elsewhere.>"}, Storage: jetstream.MemoryStorage,
	}); err != nil {
		t.Fatal(err)
	}
	err := natsjs.Bind(ctx, js, natsjs.DefaultTopology())
	if !errors.Is(err, council.ErrInvalid) || council.Retryable(err) {
		t.Fatalf("Bind = %v, want a permanent ErrInvalid", err)
	}
	for _, want := range []string{"stream COUNCIL_TOKENS incompatible", "does not capture council.stream.>", "council setup"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Bind's error %q does not say %q", err, want)
		}
	}
	s, err := js.Stream(ctx, natsjs.DefaultTokensStream)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.Subjects; len(got) != 1 || got[0] != "elsewhere.>" {
		t.Errorf("Bind changed the stream's subjects to %v", got)
	}
}

// TestSetupTwiceThenBind: SetupNATS (council setup, the council-setup
// Job) creates the topology and says so; run again it changes nothing and
// says every object exists; a function that binds then becomes ready.
func TestSetupTwiceThenBind(t *testing.T) {
	srv := natstest.StartServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	port := freePort(t)
	cfg := bindConfig(t, srv.ClientURL(), port)
	var first, second bytes.Buffer
	if err := host.SetupNATS(ctx, cfg, "setup", &first); err != nil {
		t.Fatalf("first setup: %v", err)
	}
	if err := host.SetupNATS(ctx, cfg, "setup", &second); err != nil {
		t.Fatalf("second setup: %v", err)
	}
	for _, obj := range []string{"stream COUNCIL_EVENTS", "stream COUNCIL_TOKENS", "stream COUNCIL_DLQ",
		"bucket council-deliberations", "bucket council-index", "bucket council-claims", "object store council-bodies"} {
		if !strings.Contains(first.String(), obj+": created") {
			t.Errorf("first setup does not say %s was created:\n%s", obj, first.String())
		}
		if !strings.Contains(second.String(), obj+": exists") {
			t.Errorf("second setup does not say %s exists:\n%s", obj, second.String())
		}
	}

	calls := 0
	done := make(chan error, 1)
	go func() {
		done <- host.Run(ctx, cfg, "fn", nil, connectInit(cfg, &calls), slog.New(slog.DiscardHandler))
	}()
	waitStatus(t, fmt.Sprintf("http://127.0.0.1:%d/health/readiness", port), http.StatusOK)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v after its context ended", err)
	}
}
