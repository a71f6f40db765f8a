package vllm_test

// Zero temperature on the wire. The unit tests read the body the adapter
// sends to an httptest server (zero, positive, streamed, retried); the
// contract runs against the real LLM server in
// TestServerZeroTemperatureIsGreedy below, which records the body on its
// way to the server and checks the server decodes greedily.

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"council.dev/shared/adapters/vllm"
	"council.dev/shared/council"
)

// TestUnitTemperatureReachesTheWire: the body the server receives carries
// the temperature asked for, 0 included (go-openai alone omits it), on
// plain and streamed calls and on a retried attempt.
func TestUnitTemperatureReachesTheWire(t *testing.T) {
	stream := sse(delta("hi", ""), delta("", "stop"), "[DONE]")
	tests := []struct {
		name        string
		temperature float64
		replies     []reply
		stream      bool
	}{
		{name: "zero", temperature: 0, replies: []reply{{status: 200, body: okBody}}},
		{name: "positive", temperature: 0.5, replies: []reply{{status: 200, body: okBody}}},
		{name: "zero streamed", temperature: 0, replies: []reply{{status: 200, body: stream}}, stream: true},
		{name: "zero retried", temperature: 0, replies: []reply{{status: 503, body: "busy"}, {status: 200, body: okBody}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &script{replies: tt.replies}
			ts := httptest.NewServer(srv)
			defer ts.Close()
			c, _ := newClient(t, ts.URL+"/v1")
			req := council.CompletionRequest{
				Messages:    []council.Message{{Role: "user", Content: "hi"}},
				Temperature: tt.temperature,
				MaxTokens:   8,
			}
			if tt.stream {
				req.OnToken = func(string) {}
			}
			if _, err := c.Complete(t.Context(), req); err != nil {
				t.Fatalf("Complete: %v", err)
			}
			if len(srv.bodies) != len(tt.replies) {
				t.Fatalf("server saw %d requests, want %d", len(srv.bodies), len(tt.replies))
			}
			for i, body := range srv.bodies {
				got, ok := body["temperature"]
				if !ok || got != tt.temperature {
					t.Errorf("request %d: temperature = %v (present %v), want %v; body %v", i, got, ok, tt.temperature, body)
				}
				if body["model"] != "m" || body["max_tokens"] != 8.0 {
					t.Errorf("request %d: the rest of the body changed: %v", i, body)
				}
			}
		})
	}
}

// recorder is a transport that keeps the body of every request it sends.
type recorder struct {
	rt     http.RoundTripper
	mu     sync.Mutex
	bodies [][]byte
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		_ = req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(b))
		r.mu.Lock()
		r.bodies = append(r.bodies, b)
		r.mu.Unlock()
	}
	return r.rt.RoundTrip(req)
}

// TestServerZeroTemperatureIsGreedy: against the real server, a request for
// temperature 0 sends "temperature":0, and the server decodes greedily: two
// calls with different seeds give the same text. Before the fix the
// server's default temperature (0.8) applied and the seeds made them differ.
func TestServerZeroTemperatureIsGreedy(t *testing.T) {
	rec := &recorder{}
	c := serverClient(t, vllm.WithTransportWrap(func(rt http.RoundTripper) http.RoundTripper {
		rec.rt = rt
		return rec
	}))
	var texts []string
	for _, s := range []int64{1, 2, 3} {
		seed := s
		got, err := c.Complete(t.Context(), council.CompletionRequest{
			Messages: prompt(), Temperature: 0, MaxTokens: 24, Seed: &seed,
		})
		if err != nil {
			t.Fatalf("Complete (seed %d): %v", seed, err)
		}
		texts = append(texts, got.Content)
	}
	for i, b := range rec.bodies {
		var body map[string]any
		if err := json.Unmarshal(b, &body); err != nil {
			t.Fatalf("request %d: body is not JSON: %v", i, err)
		}
		if v, ok := body["temperature"]; !ok || v != 0.0 {
			t.Errorf("request %d sent temperature %v (present %v), want 0: %s", i, v, ok, b)
		}
	}
	if len(rec.bodies) != 3 {
		t.Errorf("%d requests recorded, want 3", len(rec.bodies))
	}
	for i, s := range texts[1:] {
		if s != texts[0] {
			t.Errorf("seed %d answered %q, seed 1 %q: temperature 0 should be greedy, whatever the seed", i+2, s, texts[0])
		}
	}
}
