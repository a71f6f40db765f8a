package host

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"council.dev/shared/council"
	"council.dev/shared/redact"
)

// Errors of the authentication of requests. Both are permanent: the sender
// must change its credentials, so the receiver answers 401 or 403, which
// Knative's delivery does not retry.
var (
	// ErrUnauthenticated is a request without valid credentials (401).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden is a request whose valid credentials are not allowed (403).
	ErrForbidden = errors.New("forbidden")
)

// authStatus is the HTTP status of an authentication error.
func authStatus(err error) int {
	if errors.Is(err, ErrForbidden) {
		return http.StatusForbidden
	}
	return http.StatusUnauthorized
}

// bearer returns the token of an "Authorization: Bearer <token>" header.
func bearer(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// RequireToken wraps h so that it serves only requests carrying
// "Authorization: Bearer <token>"; others get 401 with the JSON error reply
// and a WWW-Authenticate header. The comparison takes constant time. An
// empty token is a programming error: it returns an error wrapping
// council.ErrInvalid.
func RequireToken(token string, h http.Handler) (http.Handler, error) {
	if token == "" || h == nil {
		return nil, fmt.Errorf("host: require token: %w", council.Invalidf("empty token or nil handler"))
	}
	want := []byte(token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := bearer(r)
		if !ok || subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="council"`)
			writeError(w, http.StatusUnauthorized, "a bearer token is required (COUNCIL_QUERY_TOKEN)")
			return
		}
		h.ServeHTTP(w, r)
	}), nil
}

// TokenVerifier verifies the sender identity of events: an OIDC token
// (Authorization: Bearer <JWT>) such as Knative Eventing sends when its
// OIDC feature is on, signed by a key of the issuer's JWKS, for the
// expected audience, not expired, and, when subjects are configured, from
// one of them. Create it with NewTokenVerifier.
type TokenVerifier struct {
	verifier *oidc.IDTokenVerifier
	subjects []string
}

// NewTokenVerifier returns a verifier of the tokens o describes. It fetches
// the keys only when a token needs them (and again when a token names a key
// it does not know), so the issuer need not answer at start. ctx bounds
// nothing but carries values only; the verifier outlives it.
func NewTokenVerifier(ctx context.Context, o OIDC) (*TokenVerifier, error) {
	if !o.Enabled() || o.Issuer == "" || o.JWKSURL == "" {
		return nil, fmt.Errorf("host: token verifier: %w", council.Invalidf("audience, issuer and JWKS URL are required"))
	}
	tr, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		return nil, errors.New("host: token verifier: default transport is not an *http.Transport")
	}
	tr = tr.Clone()
	if o.CAFile != "" {
		pool, err := loadCAs(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("host: token verifier: COUNCIL_AUTH_OIDC_CA=%q: %w", o.CAFile, council.Invalidf("%v", err))
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	var rt http.RoundTripper = tr
	if o.TokenFile != "" {
		rt = fileBearer{file: o.TokenFile, next: tr}
	}
	client := &http.Client{Transport: rt, Timeout: 10 * time.Second}
	keys := oidc.NewRemoteKeySet(oidc.ClientContext(ctx, client), o.JWKSURL)
	v := oidc.NewVerifier(o.Issuer, keys, &oidc.Config{
		ClientID:             o.Audience,
		SupportedSigningAlgs: []string{oidc.RS256, oidc.RS384, oidc.RS512, oidc.ES256, oidc.ES384, oidc.ES512, oidc.PS256},
	})
	return &TokenVerifier{verifier: v, subjects: slices.Clone(o.Subjects)}, nil
}

// Verify checks the request's bearer token and returns its subject. Its
// errors wrap ErrUnauthenticated (no token, bad signature, wrong issuer or
// audience, expired; also keys that cannot be fetched, logged as such by
// the caller) or ErrForbidden (a valid token from a subject not allowed).
func (v *TokenVerifier) Verify(r *http.Request) (string, error) {
	raw, ok := bearer(r)
	if !ok {
		return "", fmt.Errorf("host: %w: an OIDC token is required (Authorization: Bearer)", ErrUnauthenticated)
	}
	tok, err := v.verifier.Verify(r.Context(), raw)
	if err != nil {
		return "", fmt.Errorf("host: %w: token rejected: %s", ErrUnauthenticated, redact.Text(err.Error()))
	}
	if len(v.subjects) > 0 && !slices.ContainsFunc(v.subjects, func(s string) bool { return subjectMatches(s, tok.Subject) }) {
		return tok.Subject, fmt.Errorf("host: %w: sender %q is not allowed", ErrForbidden, tok.Subject)
	}
	return tok.Subject, nil
}

// subjectMatches reports whether sub is allowed by pattern: equal, or, for
// a pattern ending in "*", starting with what precedes it (as Knative's
// EventPolicy matches subjects).
func subjectMatches(pattern, sub string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(sub, prefix)
	}
	return pattern == sub
}

// fileBearer adds the token in file to each request, reading it every time:
// a projected service account token rotates.
type fileBearer struct {
	file string
	next http.RoundTripper
}

func (b fileBearer) RoundTrip(r *http.Request) (*http.Response, error) {
	tok, err := os.ReadFile(b.file)
	if err != nil {
		return nil, fmt.Errorf("COUNCIL_AUTH_OIDC_JWKS_TOKEN_FILE: %w", err)
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	return b.next.RoundTrip(r)
}

// WithTokenVerifier makes the receiver verify the sender of every event
// (POST /) with v before reading it: no or an invalid token is answered
// 401, a sender not allowed 403; neither is retried by Knative.
func WithTokenVerifier(v *TokenVerifier) Option {
	return func(s *HTTPServer) error {
		if v == nil {
			return errors.New("WithTokenVerifier: nil verifier")
		}
		s.verifier = v
		return nil
	}
}

// authenticate runs the verifier, when there is one, and answers the
// request when it fails; it reports whether the event may be read.
func (s *HTTPServer) authenticate(w http.ResponseWriter, r *http.Request, start time.Time) bool {
	if s.verifier == nil {
		return true
	}
	sub, err := s.verifier.Verify(r)
	if err == nil {
		return true
	}
	status := authStatus(err)
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="council"`)
	}
	writeError(w, status, err.Error())
	s.logger.LogAttrs(r.Context(), slog.LevelWarn, "event",
		slog.Int("status", status),
		slog.String("outcome", outcome(status)),
		slog.Duration("duration", time.Since(start)),
		slog.String("remote", r.RemoteAddr),
		slog.String("sender", sub),
		slog.String("error", err.Error()))
	return false
}
