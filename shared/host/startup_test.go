package host_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/adapters/natsjs/natstest"
	"council.dev/shared/council"
	"council.dev/shared/host"
)

// TestRunGivesUpOnAPermanentNATSError starts a function against a real NATS
// whose tokens stream exists on file storage: natsjs.Setup cannot turn it
// into council's memory stream ("can not change storage type", a 500 of code
// 10052). Run must stop at once with that error, classified permanent and
// saying so, instead of retrying forever and never becoming ready.
func TestRunGivesUpOnAPermanentNATSError(t *testing.T) {
	srv, _, js := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: natsjs.DefaultTokensStream, Subjects: []string{natsjs.DefaultTokensSubjectPrefix + ".>"},
		Storage: jetstream.FileStorage,
	}); err != nil {
		t.Fatal(err)
	}
	cfg, err := host.LoadConfig(func(k string) string {
		switch k {
		case "PORT":
			return fmt.Sprint(freePort(t))
		case "COUNCIL_NATS_URL":
			return srv.ClientURL()
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	init := func(ctx context.Context) (host.Function, error) {
		calls++
		nc, _, err := host.ConnectNATS(ctx, cfg, "fn")
		if err != nil {
			return host.Function{}, err
		}
		nc.Close()
		return host.Function{}, errors.New("ConnectNATS succeeded over an incompatible stream")
	}
	var logs bytes.Buffer
	start := time.Now()
	err = host.Run(ctx, cfg, "fn", nil, init, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err == nil || council.Retryable(err) || !errors.Is(err, council.ErrInvalid) {
		t.Fatalf("Run = %v, want a permanent ErrInvalid", err)
	}
	for _, want := range []string{"cannot start", "permanent", "can not change storage type"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Run's error %q does not say %q", err, want)
		}
	}
	if calls != 1 {
		t.Errorf("init called %d times, want 1: a permanent error is not retried", calls)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("Run took %s to give up", d)
	}
	if !strings.Contains(logs.String(), "permanent error, not retrying") {
		t.Errorf("no log line says the function gives up:\n%s", logs.String())
	}
}
