package vllm_test

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"council.dev/shared/adapters/vllm"
	"council.dev/shared/adapters/vllm/vllmtest"
	"council.dev/shared/council"
)

func TestUnitPing(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   error
	}{
		{"serves the model", 200, `{"object":"list","data":[{"id":"other"},{"id":"m"}]}`, nil},
		{"lacks the model", 200, `{"object":"list","data":[{"id":"other"}]}`, council.ErrInvalid},
		{"refuses the key", 401, `{"error":{"message":"bad key"}}`, council.ErrInvalid},
		{"is failing", 503, `{"error":{"message":"loading"}}`, council.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var path string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				path = r.Method + " " + r.URL.Path
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			c, err := vllm.New(srv.URL+"/v1", "m")
			if err != nil {
				t.Fatal(err)
			}
			err = c.Ping(t.Context())
			if path != "GET /v1/models" {
				t.Errorf("Ping sent %q, want GET /v1/models", path)
			}
			switch {
			case tc.want == nil && err != nil:
				t.Errorf("Ping = %v, want nil", err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Errorf("Ping = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestUnitPingUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	c, err := vllm.New("http://"+addr+"/v1", "m")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(t.Context()); !errors.Is(err, council.ErrUnavailable) {
		t.Fatalf("Ping = %v, want ErrUnavailable", err)
	}
}

func TestServerPing(t *testing.T) {
	c, err := vllm.New(vllmtest.URL(t), vllmtest.Model())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(t.Context()); err != nil {
		t.Fatalf("Ping the real server: %v", err)
	}
}
