package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/adapters/natsjs/natstest"
	"council.dev/shared/host"
)

// TestQueriesSendTheQueryToken: the query commands send COUNCIL_QUERY_TOKEN
// (or the file COUNCIL_QUERY_TOKEN_FILE) to an execute that requires it,
// and say so when it is missing.
func TestQueriesSendTheQueryToken(t *testing.T) {
	h, err := host.RequireToken("cli-q-token", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`[]`))
	}))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	defer ts.Close()
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("cli-q-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		env  map[string]string
		code int
		want string
	}{
		{"no token", nil, 1, "bearer token is required"},
		{"token", map[string]string{"COUNCIL_QUERY_TOKEN": "cli-q-token"}, 0, "no running deliberations"},
		{"token file", map[string]string{"COUNCIL_QUERY_TOKEN_FILE": file}, 0, "no running deliberations"},
		{"missing token file", map[string]string{"COUNCIL_QUERY_TOKEN_FILE": file + ".missing"}, 2, "COUNCIL_QUERY_TOKEN_FILE"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(t.Context(), []string{"jobs", "-execute", ts.URL}, strings.NewReader(""), &out, &errb,
				func(k string) string { return tt.env[k] })
			if code != tt.code || !strings.Contains(out.String()+errb.String(), tt.want) {
				t.Errorf("exit %d, want %d with %q\nstdout:\n%s\nstderr:\n%s", code, tt.code, tt.want, out.String(), errb.String())
			}
		})
	}
}

// TestDevListensOnLoopbackOnly: the local stack has no authentication, so
// dev refuses to serve the Ray Executor API beyond loopback.
func TestDevListensOnLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:50056", "10.1.2.3:50056", ":50056"} {
		r := runCLI(t, "", "dev", "-ray-executor", addr)
		if r.code != 2 || !strings.Contains(r.err, "loopback only") {
			t.Errorf("dev -ray-executor %s: exit %d, stderr %q; want 2 and loopback only", addr, r.code, r.err)
		}
	}
	if err := loopbackOnly("-ray-executor", "127.0.0.1:0"); err != nil {
		t.Errorf("127.0.0.1:0 refused: %v", err)
	}
	if err := loopbackOnly("-ray-executor", "[::1]:0"); err != nil {
		t.Errorf("[::1]:0 refused: %v", err)
	}
}

// TestSendWithNATSCredentials: send (and watch) connect with the
// functions' NATS variables; without them a server with authentication
// refuses the CLI.
func TestSendWithNATSCredentials(t *testing.T) {
	srv := natstest.StartServer(t, func(o *server.Options) { o.Username, o.Password = "cli", "cli-nats-pw" })
	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("cli", "cli-nats-pw"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := natsjs.Setup(ctx, js, natsjs.DefaultTopology()); err != nil {
		t.Fatal(err)
	}
	const fixture = "deliberation.requested.v1/valid/deliberation.json"
	send := func(env map[string]string) (int, string) {
		var out, errb bytes.Buffer
		code := run(t.Context(), []string{"send", fixture, "-nats", srv.ClientURL()}, strings.NewReader(""), &out, &errb,
			func(k string) string { return env[k] })
		return code, out.String() + errb.String()
	}
	if code, out := send(nil); code == 0 || !strings.Contains(out, "Authorization") {
		t.Errorf("send without credentials: exit %d, output %q; want refused (authorization violation)", code, out)
	}
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("cli-nats-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out := send(map[string]string{"COUNCIL_NATS_USER": "cli", "COUNCIL_NATS_PASSWORD_FILE": pw})
	if code != 0 || !strings.Contains(out, "stream COUNCIL_EVENTS seq ") {
		t.Errorf("send with credentials: exit %d, output:\n%s", code, out)
	}
	if code, out := send(map[string]string{"COUNCIL_NATS_USER": "cli"}); code != 2 || !strings.Contains(out, "COUNCIL_NATS_PASSWORD") {
		t.Errorf("send with a user and no password: exit %d, output %q; want a usage error naming COUNCIL_NATS_PASSWORD", code, out)
	}
}
