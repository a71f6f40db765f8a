package vllm

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
)

// go-openai v1.43.0 declares ChatCompletionRequest.Temperature as
// `float32 json:"temperature,omitempty"`, so a request for temperature 0
// (greedy decoding) leaves the field out and the server applies its own
// default (1.0 in vLLM and OpenAI, 0.8 in llama.cpp's server). The
// library marshals the request itself, so the field is put back on the way
// out: an attempt that asks for 0 marks its context with zeroTemperatureKey,
// and zeroTemperatureTransport writes "temperature":0 into the body of
// such a request, where go-openai never writes the key.

// zeroTemperatureKey is the context key marking an attempt that asks for
// temperature 0.
type zeroTemperatureKey struct{}

// zeroTemperatureTransport adds "temperature":0 to the JSON body of a
// request whose context carries zeroTemperatureKey.
type zeroTemperatureTransport struct{ rt http.RoundTripper }

func (t zeroTemperatureTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Context().Value(zeroTemperatureKey{}) == nil || r.Body == nil {
		return t.rt.RoundTrip(r)
	}
	body, err := io.ReadAll(r.Body)
	_ = r.Body.Close() // read in full; the new body replaces it
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	body, err = withZeroTemperature(body)
	if err != nil {
		return nil, err
	}
	out := r.Clone(r.Context())
	out.Body = io.NopCloser(bytes.NewReader(body))
	out.ContentLength = int64(len(body))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return t.rt.RoundTrip(out)
}

// withZeroTemperature returns the JSON object body with "temperature":0
// as its first member. The caller guarantees the body has no temperature
// member (go-openai omits a zero one), so no key is duplicated.
func withZeroTemperature(body []byte) ([]byte, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) < 2 || trimmed[0] != '{' {
		return nil, fmt.Errorf("request body is not a JSON object")
	}
	rest := bytes.TrimLeft(trimmed[1:], " \t\r\n")
	if len(rest) == 0 {
		return nil, fmt.Errorf("request body is not a JSON object")
	}
	out := make([]byte, 0, len(body)+len(`"temperature":0,`))
	out = append(out, `{"temperature":0`...)
	if rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, rest...), nil
}

var _ http.RoundTripper = zeroTemperatureTransport{}
