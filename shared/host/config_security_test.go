package host_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"council.dev/shared/council"
	"council.dev/shared/host"
)

func TestLoadConfigReadsSecuritySettings(t *testing.T) {
	t.Parallel()
	pw := writeFile(t, "pw", "nats-pw\n")
	rayTok := writeFile(t, "ray", "ray-tok")
	got, err := host.LoadConfig(env(map[string]string{
		"COUNCIL_NATS_USER":                "council",
		"COUNCIL_NATS_PASSWORD_FILE":       pw,
		"COUNCIL_RAY_HEADERS":              `{"X-Org":"council"}`,
		"COUNCIL_RAY_TOKEN_FILE":           rayTok,
		"COUNCIL_QUERY_TOKEN":              "q-tok",
		"COUNCIL_AUTH_OIDC_AUDIENCE":       "council.dev/execute",
		"COUNCIL_AUTH_OIDC_ISSUER":         "https://kubernetes.default.svc.cluster.local/",
		"COUNCIL_AUTH_OIDC_SUBJECTS":       "system:serviceaccount:a:b, system:serviceaccount:c:d",
		"COUNCIL_RAY_JOB_LLM_API_KEY_FILE": "/etc/council/llm/api-key",
		"COUNCIL_RAY_JOB_NATS_CREDS":       "/etc/council/nats/council.creds",
	}))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if diff := cmp.Diff(host.NATSAuth{User: "council", Password: "nats-pw"}, got.NATSAuth); diff != "" {
		t.Errorf("NATSAuth (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"X-Org": "council", "Authorization": "Bearer ray-tok"}, got.RayHeaders); diff != "" {
		t.Errorf("RayHeaders (-want +got):\n%s", diff)
	}
	wantOIDC := host.OIDC{
		Audience: "council.dev/execute", Issuer: "https://kubernetes.default.svc.cluster.local/",
		JWKSURL:  "https://kubernetes.default.svc.cluster.local/openid/v1/jwks",
		Subjects: []string{"system:serviceaccount:a:b", "system:serviceaccount:c:d"},
	}
	if diff := cmp.Diff(wantOIDC, got.OIDC); diff != "" {
		t.Errorf("OIDC (-want +got):\n%s", diff)
	}
	if got.QueryToken != "q-tok" {
		t.Errorf("QueryToken = %q", got.QueryToken)
	}
	job := got.JobEnv()
	if job["COUNCIL_LLM_API_KEY_FILE"] != "/etc/council/llm/api-key" || job["COUNCIL_NATS_CREDS"] != "/etc/council/nats/council.creds" {
		t.Errorf("JobEnv does not point the job at the cluster's secrets: %v", job)
	}
}

// TestLoadConfigRejectsBadSecuritySettings: each mistake is a permanent
// config error naming the variable, and no secret is in the message.
func TestLoadConfigRejectsBadSecuritySettings(t *testing.T) {
	t.Parallel()
	missing := "/nonexistent/council/file"
	seed := writeFile(t, "seed", "SUAXXX")
	tests := []struct {
		name    string
		env     map[string]string
		varName string
	}{
		{"creds file missing", map[string]string{"COUNCIL_NATS_CREDS": missing}, "COUNCIL_NATS_CREDS"},
		{"password file missing", map[string]string{"COUNCIL_NATS_USER": "u", "COUNCIL_NATS_PASSWORD_FILE": missing}, "COUNCIL_NATS_PASSWORD_FILE"},
		{"value and file", map[string]string{"COUNCIL_LLM_API_KEY": "sk-secret-1", "COUNCIL_LLM_API_KEY_FILE": seed}, "COUNCIL_LLM_API_KEY_FILE"},
		{"user without password", map[string]string{"COUNCIL_NATS_USER": "u"}, "COUNCIL_NATS_USER"},
		{"two identities", map[string]string{"COUNCIL_NATS_NKEY": seed, "COUNCIL_NATS_TOKEN": "tok-secret-2"}, "COUNCIL_NATS_CREDS"},
		{"jwt without seed", map[string]string{"COUNCIL_NATS_JWT": seed}, "COUNCIL_NATS_JWT"},
		{"cert without key", map[string]string{"COUNCIL_NATS_TLS_CERT": seed}, "COUNCIL_NATS_TLS_CERT"},
		{"CA not PEM", map[string]string{"COUNCIL_NATS_TLS_CA": seed}, "COUNCIL_NATS_TLS_CA"},
		{"URL with credentials and an identity", map[string]string{
			"COUNCIL_NATS_URL": "nats://u:url-secret-3@nats:4222", "COUNCIL_NATS_TOKEN": "tok-secret-2",
		}, "COUNCIL_NATS_URL"},
		{"bad URL with credentials", map[string]string{"COUNCIL_LLM_URL": "ftp://u:url-secret-4@llm/v1"}, "COUNCIL_LLM_URL"},
		{"ray headers not JSON", map[string]string{"COUNCIL_RAY_HEADERS": "Authorization=Bearer hdr-secret-5"}, "COUNCIL_RAY_HEADERS"},
		{"ray token twice", map[string]string{
			"COUNCIL_RAY_HEADERS": `{"authorization":"Bearer hdr-secret-5"}`, "COUNCIL_RAY_TOKEN": "tok-secret-2",
		}, "COUNCIL_RAY_TOKEN"},
		{"oidc without issuer", map[string]string{"COUNCIL_AUTH_OIDC_AUDIENCE": "a"}, "COUNCIL_AUTH_OIDC_ISSUER"},
		{"oidc without audience", map[string]string{"COUNCIL_AUTH_OIDC_ISSUER": "https://k8s"}, "COUNCIL_AUTH_OIDC_AUDIENCE"},
		{"job key path relative", map[string]string{"COUNCIL_RAY_JOB_LLM_API_KEY_FILE": "key"}, "COUNCIL_RAY_JOB_LLM_API_KEY_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := host.LoadConfig(env(tt.env))
			if !errors.Is(err, council.ErrInvalid) {
				t.Fatalf("LoadConfig = %v, want an error wrapping council.ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.varName) {
				t.Errorf("error does not name %s: %v", tt.varName, err)
			}
			for _, secret := range []string{"sk-secret-1", "tok-secret-2", "url-secret-3", "url-secret-4", "hdr-secret-5"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error carries the secret %q: %v", secret, err)
				}
			}
		})
	}
}
