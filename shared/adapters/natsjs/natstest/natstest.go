// Package natstest runs an embedded NATS server with JetStream for tests.
package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Start runs a NATS server with JetStream on a random loopback port, with its
// store in a temporary directory of t, and returns it with a connection and
// a JetStream handle on it. The connection and the server are shut down when
// the test ends. It fails the test when the server does not start.
func Start(t testing.TB) (*server.Server, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	srv := StartServer(t, nil)
	nc, err := nats.Connect(srv.ClientURL(), nats.Name(t.Name()))
	if err != nil {
		t.Fatalf("natstest: connect to %s: %v", srv.ClientURL(), err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("natstest: jetstream: %v", err)
	}
	return srv, nc, js
}

// StartServer runs a NATS server with JetStream as Start does, after
// configure (when not nil) has changed its options — to turn on
// authentication with users, NKeys or accounts, for example — and returns it
// without connecting. It is shut down when the test ends.
func StartServer(t testing.TB, configure func(*server.Options)) *server.Server {
	t.Helper()
	opts := &server.Options{
		ServerName: "natstest",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		NoLog:      true,
		NoSigs:     true,
		JetStream:  true,
		StoreDir:   t.TempDir(),
	}
	if configure != nil {
		configure(opts)
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("natstest: new nats server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		t.Fatalf("natstest: nats server with JetStream did not start within 10s")
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv
}
