package host

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/nats-io/nats.go"

	"council.dev/shared/council"
	"council.dev/shared/redact"
)

// NATSAuth is how a function authenticates to NATS and secures the
// connection. At most one identity is set: a credentials file, an NKey seed
// (with a user JWT or alone), a user and password, or a token. The TLS files
// are independent of it.
type NATSAuth struct {
	// CredsFile is a NATS credentials file, user JWT and NKey seed
	// (COUNCIL_NATS_CREDS).
	CredsFile string
	// NKeyFile is a file holding an NKey seed (COUNCIL_NATS_NKEY); with
	// JWTFile it signs for that user JWT, alone it is an NKey user.
	NKeyFile string
	// JWTFile is a file holding a user JWT (COUNCIL_NATS_JWT); it needs
	// NKeyFile.
	JWTFile string
	// User and Password (COUNCIL_NATS_USER, COUNCIL_NATS_PASSWORD or
	// COUNCIL_NATS_PASSWORD_FILE).
	User, Password string
	// Token is an authorization token (COUNCIL_NATS_TOKEN or
	// COUNCIL_NATS_TOKEN_FILE).
	Token string
	// TLSCA is a PEM file of the CAs that sign the server's certificate
	// (COUNCIL_NATS_TLS_CA).
	TLSCA string
	// TLSCert and TLSKey are the PEM files of a client certificate and its
	// key, for servers that verify clients (COUNCIL_NATS_TLS_CERT,
	// COUNCIL_NATS_TLS_KEY).
	TLSCert, TLSKey string
}

// OIDC is the verification of the sender identity of events received over
// HTTP: Knative Eventing's OIDC audience tokens (Authorization: Bearer
// <JWT>). It is on when Audience is set.
type OIDC struct {
	// Audience is the audience the tokens must carry: the audience
	// Knative gives this function's address (COUNCIL_AUTH_OIDC_AUDIENCE).
	Audience string
	// Issuer is the token issuer, the cluster's service account issuer
	// (COUNCIL_AUTH_OIDC_ISSUER).
	Issuer string
	// JWKSURL is where the issuer's signing keys are
	// (COUNCIL_AUTH_OIDC_JWKS_URL; default Issuer + "/openid/v1/jwks", the
	// Kubernetes API server's).
	JWKSURL string
	// CAFile is a PEM file of the CAs of the JWKS endpoint
	// (COUNCIL_AUTH_OIDC_CA, e.g. the service account's ca.crt); empty: the
	// system's.
	CAFile string
	// TokenFile is a bearer token sent when fetching the keys, read at each
	// fetch because it rotates (COUNCIL_AUTH_OIDC_JWKS_TOKEN_FILE, e.g. the
	// pod's service account token); empty: none.
	TokenFile string
	// Subjects, when not empty, are the only token subjects accepted
	// (COUNCIL_AUTH_OIDC_SUBJECTS, comma-separated), e.g. the service
	// accounts of the broker's triggers; a trailing "*" matches any rest,
	// as in an EventPolicy ("system:serviceaccount:council:execute-*").
	Subjects []string
}

// Enabled reports whether events over HTTP must carry a valid token.
func (o OIDC) Enabled() bool { return o.Audience != "" }

// loadSecurity reads the variables of authentication, TLS and secrets into c
// (see docs/CONVENTIONS.md and docs/security.md). bad reports an invalid
// variable; it never receives a secret's value.
func loadSecurity(get func(string) string, bad func(name, value, why string), c *Config) {
	secret := func(name string) string {
		v, f := get(name), get(name+"_FILE")
		switch {
		case v != "" && f != "":
			bad(name+"_FILE", f, "set either "+name+" or "+name+"_FILE, not both")
			return ""
		case f != "":
			b, err := os.ReadFile(f)
			if err != nil {
				bad(name+"_FILE", f, "cannot read the file: "+pathError(err))
				return ""
			}
			s := strings.TrimSpace(string(b))
			if s == "" {
				bad(name+"_FILE", f, "the file is empty")
			}
			return s
		}
		return v
	}
	file := func(name string) string {
		f := get(name)
		if f == "" {
			return ""
		}
		st, err := os.Stat(f)
		switch {
		case err != nil:
			bad(name, f, "cannot read the file: "+pathError(err))
			return ""
		case st.IsDir():
			bad(name, f, "is a directory, want a file")
			return ""
		}
		return f
	}

	c.LLMAPIKey = secret("COUNCIL_LLM_API_KEY")

	a := &c.NATSAuth
	a.CredsFile = file("COUNCIL_NATS_CREDS")
	a.NKeyFile = file("COUNCIL_NATS_NKEY")
	a.JWTFile = file("COUNCIL_NATS_JWT")
	a.User = get("COUNCIL_NATS_USER")
	a.Password = secret("COUNCIL_NATS_PASSWORD")
	a.Token = secret("COUNCIL_NATS_TOKEN")
	a.TLSCA = file("COUNCIL_NATS_TLS_CA")
	a.TLSCert = file("COUNCIL_NATS_TLS_CERT")
	a.TLSKey = file("COUNCIL_NATS_TLS_KEY")
	identities := 0
	for _, set := range []bool{a.CredsFile != "", a.NKeyFile != "" || a.JWTFile != "", a.User != "", a.Token != ""} {
		if set {
			identities++
		}
	}
	switch {
	case identities > 1:
		bad("COUNCIL_NATS_CREDS", a.CredsFile, "set one NATS identity: COUNCIL_NATS_CREDS, COUNCIL_NATS_NKEY (with COUNCIL_NATS_JWT or alone), "+
			"COUNCIL_NATS_USER with COUNCIL_NATS_PASSWORD, or COUNCIL_NATS_TOKEN")
	case a.JWTFile != "" && a.NKeyFile == "":
		bad("COUNCIL_NATS_JWT", a.JWTFile, "needs COUNCIL_NATS_NKEY, the seed that signs for it")
	case (a.User == "") != (a.Password == ""):
		bad("COUNCIL_NATS_USER", a.User, "COUNCIL_NATS_USER and COUNCIL_NATS_PASSWORD go together")
	}
	if (a.TLSCert == "") != (a.TLSKey == "") {
		bad("COUNCIL_NATS_TLS_CERT", a.TLSCert, "COUNCIL_NATS_TLS_CERT and COUNCIL_NATS_TLS_KEY go together")
	} else if a.TLSCert != "" {
		if _, err := tls.LoadX509KeyPair(a.TLSCert, a.TLSKey); err != nil {
			bad("COUNCIL_NATS_TLS_CERT", a.TLSCert, "cannot load the certificate and COUNCIL_NATS_TLS_KEY: "+pathError(err))
		}
	}
	if a.TLSCA != "" {
		if _, err := loadCAs(a.TLSCA); err != nil {
			bad("COUNCIL_NATS_TLS_CA", a.TLSCA, err.Error())
		}
	}
	if u, err := url.Parse(c.NATSURL); err == nil && u.User != nil && identities > 0 {
		bad("COUNCIL_NATS_URL", redact.URL(c.NATSURL), "carries credentials and another NATS identity is set: keep credentials out of the URL")
	}

	c.RayHeaders = map[string]string{}
	if v := get("COUNCIL_RAY_HEADERS"); v != "" {
		if err := json.Unmarshal([]byte(v), &c.RayHeaders); err != nil {
			// The value may hold a credential: never echo it.
			bad("COUNCIL_RAY_HEADERS", redact.Mask, `want a JSON object of header names to values, e.g. {"X-Org":"council"}`)
		}
		for k := range c.RayHeaders {
			if k == "" || strings.ContainsAny(k, " :\r\n") {
				bad("COUNCIL_RAY_HEADERS", redact.Mask, fmt.Sprintf("header name %q is not valid", k))
			}
		}
	}
	if tok := secret("COUNCIL_RAY_TOKEN"); tok != "" {
		for k := range c.RayHeaders {
			if http.CanonicalHeaderKey(k) == "Authorization" {
				bad("COUNCIL_RAY_TOKEN", redact.Mask, "COUNCIL_RAY_HEADERS already sets Authorization")
			}
		}
		c.RayHeaders["Authorization"] = "Bearer " + tok
	}
	if len(c.RayHeaders) == 0 {
		c.RayHeaders = nil
	}
	c.QueryToken = secret("COUNCIL_QUERY_TOKEN")

	o := &c.OIDC
	o.Audience = get("COUNCIL_AUTH_OIDC_AUDIENCE")
	o.Issuer = get("COUNCIL_AUTH_OIDC_ISSUER")
	o.JWKSURL = get("COUNCIL_AUTH_OIDC_JWKS_URL")
	o.CAFile = file("COUNCIL_AUTH_OIDC_CA")
	o.TokenFile = file("COUNCIL_AUTH_OIDC_JWKS_TOKEN_FILE")
	for s := range strings.SplitSeq(get("COUNCIL_AUTH_OIDC_SUBJECTS"), ",") {
		if s = strings.TrimSpace(s); s != "" {
			o.Subjects = append(o.Subjects, s)
		}
	}
	if o.Audience != "" {
		if why := checkURL(o.Issuer, []string{"http", "https"}); o.Issuer == "" || why != "" {
			bad("COUNCIL_AUTH_OIDC_ISSUER", redact.URL(o.Issuer), "COUNCIL_AUTH_OIDC_AUDIENCE is set: want the token issuer's URL, e.g. https://kubernetes.default.svc.cluster.local")
		}
		if o.JWKSURL == "" && o.Issuer != "" {
			o.JWKSURL = strings.TrimRight(o.Issuer, "/") + "/openid/v1/jwks"
		}
		if why := checkURL(o.JWKSURL, []string{"http", "https"}); o.JWKSURL != "" && why != "" {
			bad("COUNCIL_AUTH_OIDC_JWKS_URL", redact.URL(o.JWKSURL), why)
		}
		if o.CAFile != "" {
			if _, err := loadCAs(o.CAFile); err != nil {
				bad("COUNCIL_AUTH_OIDC_CA", o.CAFile, err.Error())
			}
		}
	} else if o.Issuer != "" || o.JWKSURL != "" || len(o.Subjects) > 0 {
		bad("COUNCIL_AUTH_OIDC_AUDIENCE", "", "the other COUNCIL_AUTH_OIDC_* variables are set: set the audience too, or none of them")
	}

	c.RayJobLLMAPIKeyFile = get("COUNCIL_RAY_JOB_LLM_API_KEY_FILE")
	c.RayJobNATSCreds = get("COUNCIL_RAY_JOB_NATS_CREDS")
	for name, p := range map[string]string{"COUNCIL_RAY_JOB_LLM_API_KEY_FILE": c.RayJobLLMAPIKeyFile, "COUNCIL_RAY_JOB_NATS_CREDS": c.RayJobNATSCreds} {
		if p != "" && !strings.HasPrefix(p, "/") {
			bad(name, p, "want an absolute path on the Ray cluster's nodes (where a mounted Secret holds it)")
		}
	}
}

// loadCAs reads a PEM file of certificates.
func loadCAs(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, errors.New("cannot read the file: " + pathError(err))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("holds no PEM certificate")
	}
	return pool, nil
}

// pathError is the reason of a file error without the path, which the
// caller names with its variable.
func pathError(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// NATSOptions returns the options that authenticate the NATS connection
// and secure it with TLS as NATSAuth says; LoadConfig has checked the files.
// A seed file that does not parse is an error wrapping council.ErrInvalid.
func (c Config) NATSOptions() ([]nats.Option, error) {
	a := c.NATSAuth
	var opts []nats.Option
	switch {
	case a.CredsFile != "":
		opts = append(opts, nats.UserCredentials(a.CredsFile))
	case a.JWTFile != "":
		opts = append(opts, nats.UserCredentials(a.JWTFile, a.NKeyFile))
	case a.NKeyFile != "":
		o, err := nats.NkeyOptionFromSeed(a.NKeyFile)
		if err != nil {
			return nil, council.Invalidf("COUNCIL_NATS_NKEY=%q: %v", a.NKeyFile, pathError(err))
		}
		opts = append(opts, o)
	case a.User != "":
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	case a.Token != "":
		opts = append(opts, nats.Token(a.Token))
	}
	if a.TLSCA != "" {
		opts = append(opts, nats.RootCAs(a.TLSCA))
	}
	if a.TLSCert != "" {
		opts = append(opts, nats.ClientCert(a.TLSCert, a.TLSKey))
	}
	return opts, nil
}

// redactErr returns err with the URLs in its text redacted, keeping its
// classification: errors.Is sees the same sentinels.
func redactErr(err error) error {
	if err == nil {
		return nil
	}
	msg := redact.Text(err.Error())
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
