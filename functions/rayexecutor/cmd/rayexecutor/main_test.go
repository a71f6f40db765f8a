package main

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/adapters/natsjs/natstest"
)

// TestExitsNonZeroOnAPermanentStartError runs the command against a real
// NATS whose tokens stream exists on file storage, which council's topology
// cannot turn into its memory stream ("can not change storage type", a
// permanent refusal): the command must exit 1 at once instead of retrying
// forever, never ready.
func TestExitsNonZeroOnAPermanentStartError(t *testing.T) {
	srv, _, js := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: natsjs.DefaultTokensStream, Subjects: []string{natsjs.DefaultTokensSubjectPrefix + ".>"},
		Storage: jetstream.FileStorage,
	}); err != nil {
		t.Fatal(err)
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	t.Setenv("PORT", fmt.Sprint(port))
	t.Setenv("COUNCIL_NATS_URL", srv.ClientURL())
	t.Setenv("COUNCIL_LOG_LEVEL", "error")
	done := make(chan int, 1)
	go func() { done <- run() }()
	select {
	case code := <-done:
		if code != 1 {
			t.Errorf("exit status %d, want 1", code)
		}
	case <-ctx.Done():
		t.Fatal("the command still runs after 30s: it retries a permanent error")
	}
}
