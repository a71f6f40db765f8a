package host_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"council.dev/shared/adapters/natsjs/natstest"
	"council.dev/shared/council"
	"council.dev/shared/host"
)

// authServer runs a NATS server with authentication on: the user council
// (password) and an NKey user may do everything; the user reader may not
// publish council's events. It returns the server and the NKey user's seed.
func authServer(t *testing.T) (*server.Server, []byte) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	srv := natstest.StartServer(t, func(o *server.Options) {
		o.Users = []*server.User{
			{Username: "council", Password: "c0uncil-nats-pw"},
			{Username: "reader", Password: "reader-pw", Permissions: &server.Permissions{
				Publish: &server.SubjectPermission{Deny: []string{"council.events.>"}},
			}},
		}
		o.Nkeys = []*server.NkeyUser{{Nkey: pub}}
	})
	return srv, seed
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNATSWithAuthRefusesClientsWithoutCredentials(t *testing.T) {
	t.Parallel()
	srv, _ := authServer(t)
	_, err := nats.Connect(srv.ClientURL())
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("connect without credentials: err = %v, want an authorization violation", err)
	}
	_, err = nats.Connect(srv.ClientURL(), nats.UserInfo("council", "wrong"))
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("connect with a wrong password: err = %v, want an authorization violation", err)
	}

	// A user without the permission cannot publish an event.
	errc := make(chan error, 1)
	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("reader", "reader-pw"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errc <- err:
			default:
			}
		}))
	if err != nil {
		t.Fatalf("connect as reader: %v", err)
	}
	defer nc.Close()
	if err := nc.Publish("council.events.dev.council.proposal.requested.v1", []byte("{}")); err != nil {
		t.Fatalf("publish: %v", err)
	}
	_ = nc.Flush()
	select {
	case err := <-errc:
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Fatalf("reader's publish: err = %v, want a permissions violation", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reader's publish on council.events was not refused within 10s")
	}
}

func TestConnectNATSWithCredentialsFromConfig(t *testing.T) {
	t.Parallel()
	srv, seed := authServer(t)
	tests := []struct {
		name string
		env  map[string]string
	}{
		{"user and password file", map[string]string{
			"COUNCIL_NATS_USER": "council", "COUNCIL_NATS_PASSWORD_FILE": writeFile(t, "pw", "c0uncil-nats-pw\n"),
		}},
		{"nkey seed file", map[string]string{"COUNCIL_NATS_NKEY": writeFile(t, "seed", string(seed))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.env["COUNCIL_NATS_URL"] = srv.ClientURL()
			cfg, err := host.LoadConfig(env(tt.env))
			if err != nil {
				t.Fatalf("LoadConfig: %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			nc, js, err := host.ConnectNATS(ctx, cfg, "test")
			if err != nil {
				t.Fatalf("ConnectNATS: %v", err)
			}
			defer nc.Close()
			// The streams are set up (ConnectNATS did) and a publish is accepted.
			ack, err := js.Publish(ctx, cfg.NATS.EventSubject("dev.council.sweep.tick.v1"), []byte("{}"))
			if err != nil {
				t.Fatalf("publish with credentials: %v", err)
			}
			if ack.Stream != cfg.NATS.EventsStream {
				t.Errorf("ack stream = %q, want %q", ack.Stream, cfg.NATS.EventsStream)
			}
		})
	}
}

func TestConnectNATSErrorsRedactCredentials(t *testing.T) {
	t.Parallel()
	// A seed file that is no seed fails at connect; the URL's password
	// must not be in the error.
	cfg, err := host.LoadConfig(env(map[string]string{
		"COUNCIL_NATS_URL":  "nats://council:hunter2-secret@127.0.0.1:1",
		"COUNCIL_NATS_NKEY": writeFile(t, "seed", "not a seed"),
	}))
	if err == nil {
		_, _, err = host.ConnectNATS(context.Background(), cfg, "test")
	}
	if err == nil {
		t.Fatal("want an error")
	}
	if strings.Contains(err.Error(), "hunter2-secret") {
		t.Errorf("error carries the password: %v", err)
	}
	if !errors.Is(err, council.ErrInvalid) {
		t.Errorf("error %v is not permanent", err)
	}
}

// TestConnectNATSWithWrongCredentialsIsPermanent: a server that refuses the
// credentials is a permanent start-up error naming the cause, not a wait.
func TestConnectNATSWithWrongCredentialsIsPermanent(t *testing.T) {
	t.Parallel()
	srv, _ := authServer(t)
	cfg, err := host.LoadConfig(env(map[string]string{
		"COUNCIL_NATS_URL": srv.ClientURL(), "COUNCIL_NATS_USER": "council", "COUNCIL_NATS_PASSWORD": "wrong-pw",
	}))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = host.ConnectNATS(t.Context(), cfg, "test")
	if !errors.Is(err, council.ErrInvalid) || !strings.Contains(err.Error(), "refused the credentials") {
		t.Fatalf("ConnectNATS with a wrong password = %v; want a permanent error saying the credentials were refused", err)
	}
	if strings.Contains(err.Error(), "wrong-pw") {
		t.Errorf("error carries the password: %v", err)
	}
}
