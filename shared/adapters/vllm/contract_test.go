package vllm_test

import (
	"testing"

	"council.dev/shared/adapters/vllm/vllmtest"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// TestCompleterContract runs the Completer contract (the fake passes the
// same suite) against the real OpenAI-compatible server, which must serve
// concurrent calls at once (llama.cpp's slots, vLLM's batching).
func TestCompleterContract(t *testing.T) {
	counciltest.TestCompleter(t, counciltest.CompleterContract{
		New:        func(t *testing.T) council.Completer { return serverClient(t) },
		Model:      vllmtest.Model(),
		Disallowed: "not-" + vllmtest.Model(),
		Parallel:   true,
	})
}
