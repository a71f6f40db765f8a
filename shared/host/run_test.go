package host_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"council.dev/shared/council"
	"council.dev/shared/host"
)

func freePort(t *testing.T) int {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

func getStatus(t *testing.T, url string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

func waitStatus(t *testing.T, url string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := getStatus(t, url)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s = %d, want %d", url, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRunListensBeforeItsDependenciesAnswer: while init fails (NATS down),
// the function is live but not ready and answers events 503; once init
// succeeds it is ready, handles events and serves its routes.
func TestRunListensBeforeItsDependenciesAnswer(t *testing.T) {
	port := freePort(t)
	cfg, err := host.LoadConfig(func(k string) string {
		if k == "PORT" {
			return fmt.Sprint(port)
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	var up atomic.Bool
	closed := make(chan struct{})
	init := func(context.Context) (host.Function, error) {
		if !up.Load() {
			return host.Function{}, council.Unavailablef("nats: connection refused")
		}
		return host.Function{
			Handle: echo,
			Routes: map[string]http.Handler{"GET /status": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = io.WriteString(w, "ok")
			})},
			Close: func() { close(closed) },
		}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- host.Run(ctx, cfg, "fn", []string{"t"}, init, slog.New(slog.DiscardHandler)) }()

	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitStatus(t, base+"/health/liveness", http.StatusOK)
	if got := getStatus(t, base+"/health/readiness"); got != http.StatusServiceUnavailable {
		t.Errorf("readiness while starting = %d, want 503", got)
	}
	if got := getStatus(t, base+"/status"); got != http.StatusServiceUnavailable {
		t.Errorf("route while starting = %d, want 503", got)
	}
	if resp := postBinary(t, base, testEvent(t, "e-1", "dev.council.test.v1")); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("event while starting = %d, want 503 (retried by the broker)", resp.StatusCode)
	}

	up.Store(true)
	waitStatus(t, base+"/health/readiness", http.StatusOK)
	if got := getStatus(t, base+"/status"); got != http.StatusOK {
		t.Errorf("route once ready = %d, want 200", got)
	}
	if resp := postBinary(t, base, testEvent(t, "e-2", "dev.council.test.v1")); resp.StatusCode != http.StatusOK {
		t.Errorf("event once ready = %d, want 200", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
	select {
	case <-closed:
	default:
		t.Error("Run did not call Function.Close")
	}
}

func TestRunStopsOnAPermanentInitError(t *testing.T) {
	cfg, err := host.LoadConfig(func(k string) string {
		if k == "PORT" {
			return fmt.Sprint(freePort(t))
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	init := func(context.Context) (host.Function, error) {
		return host.Function{}, council.Invalidf("bucket name is invalid")
	}
	err = host.Run(context.Background(), cfg, "fn", nil, init, slog.New(slog.DiscardHandler))
	if !errors.Is(err, council.ErrInvalid) || !strings.Contains(err.Error(), "bucket name") {
		t.Fatalf("Run = %v, want the permanent init error", err)
	}
}
