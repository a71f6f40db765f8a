package host_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/go-jose/go-jose/v4"

	"council.dev/shared/host"
)

// issuer is a real OIDC issuer for the tests: an RSA key the test generates
// and its JWKS served over HTTP, as the Kubernetes API server serves its
// service account keys.
type issuer struct {
	url     string
	key     *rsa.PrivateKey
	fetches atomic.Int32
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	iss := &issuer{key: key}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/openid/v1/jwks" {
			http.NotFound(w, r)
			return
		}
		iss.fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	}))
	t.Cleanup(srv.Close)
	iss.url = srv.URL
	return iss
}

// token signs claims with key (the issuer's own when nil).
func (iss *issuer) token(t *testing.T, key *rsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	if key == nil {
		key = iss.key
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

const (
	testAudience = "council.dev/execute"
	brokerSender = "system:serviceaccount:council:oidc-broker"
)

func (iss *issuer) claims(sub, aud string, exp time.Duration) map[string]any {
	now := time.Now()
	return map[string]any{"iss": iss.url, "sub": sub, "aud": aud, "iat": now.Unix(), "exp": now.Add(exp).Unix()}
}

func sendWithToken(t *testing.T, url, token string, e event.Event) *http.Response {
	t.Helper()
	req, err := cehttp.NewHTTPRequestFromEvent(t.Context(), url, e)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return do(t, req)
}

func TestReceiverVerifiesSenderIdentity(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	v, err := host.NewTokenVerifier(t.Context(), host.OIDC{
		Audience: testAudience, Issuer: iss.url, JWKSURL: iss.url + "/openid/v1/jwks", Subjects: []string{brokerSender, "system:serviceaccount:council:execute-*"},
	})
	if err != nil {
		t.Fatalf("NewTokenVerifier: %v", err)
	}
	var handled atomic.Int32
	h := func(_ context.Context, e event.Event) (*event.Event, error) {
		handled.Add(1)
		return nil, nil
	}
	srv := startServer(t, h, host.WithTokenVerifier(v))

	tests := []struct {
		name  string
		token string
		want  int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"not a JWT", "abc.def.ghi", http.StatusUnauthorized},
		{"signed by another key", iss.token(t, other, iss.claims(brokerSender, testAudience, time.Minute)), http.StatusUnauthorized},
		{"another audience", iss.token(t, nil, iss.claims(brokerSender, "council.dev/generate", time.Minute)), http.StatusUnauthorized},
		{"expired", iss.token(t, nil, iss.claims(brokerSender, testAudience, -time.Minute)), http.StatusUnauthorized},
		{"another issuer", iss.token(t, nil, map[string]any{
			"iss": "https://evil.example", "sub": brokerSender, "aud": testAudience, "exp": time.Now().Add(time.Minute).Unix(),
		}), http.StatusUnauthorized},
		{"sender not allowed", iss.token(t, nil, iss.claims("system:serviceaccount:council:intruder", testAudience, time.Minute)), http.StatusForbidden},
		{"the broker", iss.token(t, nil, iss.claims(brokerSender, testAudience, time.Minute)), http.StatusAccepted},
		{"a trigger by prefix", iss.token(t, nil, iss.claims(
			"system:serviceaccount:council:execute-proposal-generated-oidc-eventing.knative.dev-trigger", testAudience, time.Minute)), http.StatusAccepted},
		{"prefix is no wildcard elsewhere", iss.token(t, nil, iss.claims(
			"system:serviceaccount:council:generate-x", testAudience, time.Minute)), http.StatusForbidden},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := handled.Load()
			resp := sendWithToken(t, srv.url, tt.token, testEvent(t, fmt.Sprintf("e-%d", i), "dev.council.test.v1"))
			if resp.StatusCode != tt.want {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.want == http.StatusAccepted {
				if handled.Load() != before+1 {
					t.Error("the handler did not run for a valid token")
				}
				return
			}
			if handled.Load() != before {
				t.Error("the handler ran for a rejected sender")
			}
			if r := readError(t, resp); r.Retryable {
				t.Errorf("reply says retryable for %d: Knative must not retry it", tt.want)
			}
		})
	}
	if iss.fetches.Load() == 0 {
		t.Error("the JWKS endpoint was never fetched")
	}
}

// TestRunRequiresTokensFromConfig: a function run with COUNCIL_QUERY_TOKEN
// and COUNCIL_AUTH_OIDC_* keeps its health routes open, its query routes
// behind the bearer token and its events behind the OIDC token.
func TestRunRequiresTokensFromConfig(t *testing.T) {
	iss := newIssuer(t)
	port := freePort(t)
	cfg, err := host.LoadConfig(env(map[string]string{
		"PORT":                       fmt.Sprint(port),
		"COUNCIL_QUERY_TOKEN_FILE":   writeFile(t, "query-token", "q-secret-token\n"),
		"COUNCIL_AUTH_OIDC_AUDIENCE": testAudience,
		"COUNCIL_AUTH_OIDC_ISSUER":   iss.url,
	}))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	init := func(context.Context) (host.Function, error) {
		return host.Function{Handle: echo, Routes: map[string]http.Handler{
			"GET /jobs": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("[]")) }),
		}}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- host.Run(ctx, cfg, "fn", []string{"t"}, init, slog.New(slog.DiscardHandler)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitStatus(t, base+"/health/readiness", http.StatusOK)
	if got := getStatus(t, base+"/health/liveness"); got != http.StatusOK {
		t.Errorf("liveness = %d, want 200 without a token", got)
	}

	query := func(token string) int {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/jobs", nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		return do(t, req).StatusCode
	}
	for _, tt := range []struct {
		token string
		want  int
	}{{"", http.StatusUnauthorized}, {"wrong", http.StatusUnauthorized}, {"q-secret-token", http.StatusOK}} {
		if got := query(tt.token); got != tt.want {
			t.Errorf("GET /jobs with token %q = %d, want %d", tt.token, got, tt.want)
		}
	}

	if resp := sendWithToken(t, base, "", testEvent(t, "e-1", "dev.council.test.v1")); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("event without a token = %d, want 401", resp.StatusCode)
	}
	// The query token is no sender identity.
	if resp := sendWithToken(t, base, "q-secret-token", testEvent(t, "e-2", "dev.council.test.v1")); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("event with the query token = %d, want 401", resp.StatusCode)
	}
	tok := iss.token(t, nil, iss.claims(brokerSender, testAudience, time.Minute))
	if resp := sendWithToken(t, base, tok, testEvent(t, "e-3", "dev.council.test.v1")); resp.StatusCode != http.StatusOK {
		t.Errorf("event with the broker's token = %d, want 200", resp.StatusCode)
	}
}
