// Package redact removes secrets from URLs and text before they reach an
// error or a log line: the password of a URL's userinfo (nats://user:pass@…,
// http://user:pass@…) and the values of query parameters that carry
// credentials (token, key, password, secret, signature, …). Config errors,
// connect errors and the clients' errors all go through it, so that a URL
// printed anywhere by council never carries a credential.
package redact

import (
	"net/url"
	"regexp"
	"strings"
)

// Mask replaces every redacted value.
const Mask = "REDACTED"

// secretParams are query parameter names, or parts of names, whose values
// are credentials.
var secretParams = []string{"token", "key", "password", "passwd", "pass", "secret", "signature", "sig", "auth", "credential", "jwt", "nkey", "seed"}

// IsSecretParam reports whether a query parameter (or header, or variable)
// named name carries a credential, by the words in its name.
func IsSecretParam(name string) bool {
	n := strings.ToLower(name)
	for _, s := range secretParams {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

// URL returns raw with the password of its userinfo replaced by Mask (a
// user name alone, which is often a token, is masked too) and the values
// of its credential query parameters masked. A string that does not parse
// as a URL is returned with whatever looks like userinfo masked (see Text),
// never as is.
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return Text(raw)
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), Mask)
		} else {
			u.User = url.User(Mask)
		}
	}
	if u.RawQuery != "" {
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			u.RawQuery = Mask
		} else {
			changed := false
			for k, vs := range q {
				if IsSecretParam(k) {
					for i := range vs {
						vs[i] = Mask
					}
					changed = true
				}
			}
			if changed {
				u.RawQuery = q.Encode()
			}
		}
	}
	// url.String escapes the mask's nothing; keep it readable.
	return u.String()
}

// URLs masks a comma-separated list of URLs (NATS takes a list), each with
// URL.
func URLs(raw string) string {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		parts[i] = URL(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}

// urlInText finds URLs with a scheme inside free text, e.g. an error message.
var urlInText = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"'<>,]+`)

// userinfoInText finds a bare "user:password@host" without a scheme.
var userinfoInText = regexp.MustCompile(`([^\s/:@"']+):([^\s/@"']+)@`)

// Text returns s with every URL in it masked as URL does, and any bare
// "user:password@" masked too: for error messages of libraries that print
// the URL they were given.
func Text(s string) string {
	s = urlInText.ReplaceAllStringFunc(s, func(m string) string {
		u, err := url.Parse(m)
		if err != nil || u.Scheme == "" {
			return userinfoInText.ReplaceAllString(m, "$1:"+Mask+"@")
		}
		return URL(m)
	})
	return userinfoInText.ReplaceAllString(s, "$1:"+Mask+"@")
}

// Secrets returns s with every occurrence of each non-empty secret replaced
// by Mask: for text that may echo a configured value (a token, a password)
// that is not inside a URL.
func Secrets(s string, secrets ...string) string {
	for _, v := range secrets {
		if v != "" {
			s = strings.ReplaceAll(s, v, Mask)
		}
	}
	return s
}
