package redact_test

import (
	"strings"
	"testing"

	"council.dev/shared/redact"
)

func TestURL(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://alice:s3cret@nats:4222", "nats://alice:REDACTED@nats:4222"},
		{"nats://t0ken@nats:4222", "nats://REDACTED@nats:4222"},
		{"http://ray:8265/api?token=abc&x=1", "http://ray:8265/api?token=REDACTED&x=1"},
		{"https://h/p?api_key=abc", "https://h/p?api_key=REDACTED"},
		{"https://h/p?page=2", "https://h/p?page=2"},
		{"not a url user:pw@host", "not a url user:REDACTED@host"},
	}
	for _, tt := range tests {
		if got := redact.URL(tt.in); got != tt.want {
			t.Errorf("URL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestURLs(t *testing.T) {
	got := redact.URLs("nats://a:b@h1:4222, nats://h2:4222")
	if want := "nats://a:REDACTED@h1:4222,nats://h2:4222"; got != want {
		t.Errorf("URLs = %q, want %q", got, want)
	}
}

func TestText(t *testing.T) {
	in := `dial "nats://alice:s3cret@10.0.0.1:4222": refused; Get "http://ray/api/jobs?token=tk1": EOF; bob:pw2@host`
	got := redact.Text(in)
	for _, secret := range []string{"s3cret", "tk1", "pw2"} {
		if strings.Contains(got, secret) {
			t.Errorf("Text kept %q: %s", secret, got)
		}
	}
	if !strings.Contains(got, "alice") || !strings.Contains(got, "10.0.0.1:4222") {
		t.Errorf("Text lost what is not secret: %s", got)
	}
}

func TestSecrets(t *testing.T) {
	if got := redact.Secrets("key sk-123 and sk-123, not x", "sk-123", ""); got != "key REDACTED and REDACTED, not x" {
		t.Errorf("Secrets = %q", got)
	}
}
