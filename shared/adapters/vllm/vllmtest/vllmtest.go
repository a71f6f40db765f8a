// Package vllmtest helps tests reach the real OpenAI-compatible LLM server
// that scripts/llm-server.sh starts (llama.cpp's own server from the
// xllamacpp wheel, serving the generated council-tiny model), or any vLLM
// named by the environment.
//
// Tests that need the server fail, never skip, when it is missing.
package vllmtest

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// Environment variables read by URL and Model.
const (
	URLEnv   = "COUNCIL_LLM_URL"
	ModelEnv = "COUNCIL_LLM_MODEL"
)

// DefaultModel is the model alias scripts/llm-server.sh serves.
const DefaultModel = "council-tiny"

const hint = "start the LLM server: scripts/llm-server.sh start; export COUNCIL_LLM_URL=$(scripts/llm-server.sh url)"

// URL returns the base URL of the LLM server (ending in /v1) from
// COUNCIL_LLM_URL. It fails t when the variable is unset or the server does
// not answer GET /models.
func URL(t testing.TB) string {
	t.Helper()
	u := strings.TrimRight(os.Getenv(URLEnv), "/")
	if u == "" {
		t.Fatalf("%s is not set: %s", URLEnv, hint)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"/models", nil)
	if err != nil {
		t.Fatalf("%s=%q: %v", URLEnv, u, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("LLM server at %s does not answer: %v; %s", u, err, hint)
	}
	_ = resp.Body.Close() // only the status matters
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("LLM server at %s: GET /models: %s", u, resp.Status)
	}
	return u
}

// Model returns the model to ask for: COUNCIL_LLM_MODEL, or council-tiny.
func Model() string {
	if m := os.Getenv(ModelEnv); m != "" {
		return m
	}
	return DefaultModel
}
