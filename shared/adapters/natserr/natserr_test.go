package natserr_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/shared/adapters/natserr"
	"council.dev/shared/adapters/natsjs/natstest"
	"council.dev/shared/council"
)

func ctxTimeout(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// check asserts that err, provoked from a real server, is classified as want
// and stays matchable as itself.
func check(t *testing.T, what string, err, want error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error; the server was expected to refuse", what)
	}
	got := natserr.Classify(err)
	if !errors.Is(got, want) {
		t.Errorf("%s: Classify(%v) = %v, want %v", what, err, got, want)
	}
	if !errors.Is(got, err) {
		t.Errorf("%s: Classify lost the original error: %v", what, got)
	}
	if retry, wantRetry := council.Retryable(got), errors.Is(want, council.ErrUnavailable); retry != wantRetry {
		t.Errorf("%s: Retryable = %v, want %v", what, retry, wantRetry)
	}
}

// TestClassifyRealServerErrors provokes each class on a real embedded
// nats-server and checks the class of what it answers.
func TestClassifyRealServerErrors(t *testing.T) {
	_, nc, js := natstest.Start(t)
	ctx := ctxTimeout(t)

	// A 500 with code 10052: permanent, however the status reads.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "MEM", Subjects: []string{"mem.>"}, Storage: jetstream.MemoryStorage,
	}); err != nil {
		t.Fatal(err)
	}
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: "MEM", Subjects: []string{"mem.>"}, Storage: jetstream.FileStorage,
	})
	if err != nil && !strings.Contains(err.Error(), "can not change storage type") {
		t.Fatalf("update of the storage type: %v, want the server's \"can not change storage type\"", err)
	}
	check(t, "change of storage type", err, council.ErrInvalid)

	// A 400: an overlapping stream.
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "OVERLAP", Subjects: []string{"mem.x"}})
	check(t, "subjects overlap", err, council.ErrInvalid)

	// A 404.
	_, err = js.Stream(ctx, "MISSING")
	check(t, "missing stream", err, council.ErrInvalid)

	// Refused by the client before asking the server.
	_, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "bad.name"})
	check(t, "invalid bucket name", err, council.ErrInvalid)

	// A lost compare-and-set.
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "cas"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, "k", []byte("1")); err != nil {
		t.Fatal(err)
	}
	_, err = kv.Create(ctx, "k", []byte("2"))
	check(t, "create of an existing key", err, council.ErrConflict)
	_, err = kv.Update(ctx, "k", []byte("3"), 99)
	check(t, "update at a stale revision", err, council.ErrConflict)

	// Over the stream's maximum message size (10054), and over the
	// server's maximum payload (refused by the client).
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "SMALL", Subjects: []string{"small.>"}, MaxMsgSize: 16,
	}); err != nil {
		t.Fatal(err)
	}
	_, err = js.Publish(ctx, "small.x", make([]byte, 64))
	check(t, "message over the stream's max size", err, council.ErrTooLarge)
	_, err = js.Publish(ctx, "small.x", make([]byte, nc.MaxPayload()+1))
	check(t, "message over max_payload", err, council.ErrTooLarge)

	// No stream on the subject: nobody answers the publish.
	_, err = js.Publish(ctx, "nowhere.x", []byte("x"))
	check(t, "publish without a stream", err, council.ErrUnavailable)

	// The connection gone.
	nc.Close()
	_, err = js.Stream(ctx, "MEM")
	check(t, "closed connection", err, council.ErrUnavailable)
}

// TestClassifyJetStreamNotEnabled runs a server without JetStream: its 503
// is transient (JetStream may be coming up).
func TestClassifyJetStreamNotEnabled(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server did not start within 10s")
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	_, err = js.CreateStream(ctxTimeout(t), jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}})
	check(t, "JetStream not enabled", err, council.ErrUnavailable)
}

func TestClassifyWithoutServer(t *testing.T) {
	unclassified := errors.New("something nobody classified")
	already := council.Invalidf("bad name")
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"unclassified is transient", unclassified, council.ErrUnavailable},
		{"deadline is transient", context.DeadlineExceeded, council.ErrUnavailable},
		{"no responders is transient", nats.ErrNoResponders, council.ErrUnavailable},
		{"an unknown 500 code is permanent", &jetstream.APIError{Code: 500, ErrorCode: 19999}, council.ErrInvalid},
		{"a known transient 500 code", &jetstream.APIError{Code: 500, ErrorCode: 10118}, council.ErrUnavailable},
		{"a 503 of an unknown code", &jetstream.APIError{Code: 503, ErrorCode: 19999}, council.ErrUnavailable},
		{"a 429", &jetstream.APIError{Code: 429, ErrorCode: 10167}, council.ErrUnavailable},
		{"a header too large", &jetstream.APIError{Code: 400, ErrorCode: 10097}, council.ErrTooLarge},
		{"already classified stays", already, council.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := natserr.Classify(tt.err); !errors.Is(got, tt.want) {
				t.Errorf("Classify(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
	if got := natserr.Classify(already); got != already { //nolint:errorlint // identity: an error already classified comes back as it is
		t.Errorf("Classify wrapped an already classified error again: %v", got)
	}
	if natserr.Classify(nil) != nil || natserr.Class(nil) != nil {
		t.Error("Classify(nil) is not nil")
	}
}
