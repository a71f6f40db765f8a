package vllm_test

// Unit tests of the retry policy: retries bounded by the context's deadline
// rather than a count, the server's Retry-After honoured and capped by the
// deadline, and fallback models. httptest servers play the answers a real
// server cannot be made to give on demand (a 429 with Retry-After, a 503
// for one model only). Against the real llama.cpp server the same policy
// runs in the test module: TestLLMOutageShorterThanTheDeadline (the server
// stopped and started mid-run, the calls retried until it answers),
// TestNoLLMCallAfterTheDeadline and TestFallbackModelAnswers (a second real
// server that refuses the agent's model, the fallback answering).

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"council.dev/shared/adapters/vllm"
	"council.dev/shared/council"
)

func TestUnitRetryAfterIsHonoured(t *testing.T) {
	date := func() string { return time.Now().Add(3 * time.Second).UTC().Format(http.TimeFormat) }
	tests := []struct {
		name     string
		status   int
		header   string
		min, max time.Duration
	}{
		{"429 with seconds", 429, "2", 2 * time.Second, 2 * time.Second},
		{"503 with seconds", 503, "1", time.Second, time.Second},
		// An HTTP date has a resolution of one second.
		{"503 with an HTTP date", 503, date(), 1 * time.Second, 3 * time.Second},
		{"a date in the past waits the backoff", 503, "Mon, 01 Jan 2001 00:00:00 GMT", 10 * time.Millisecond, 10 * time.Millisecond},
		{"unreadable: the backoff", 429, "soon", 10 * time.Millisecond, 10 * time.Millisecond},
		{"shorter than the backoff: the backoff", 503, "0", 10 * time.Millisecond, 10 * time.Millisecond},
		// Retry-After on other statuses is not ours to honour.
		{"500 ignores it", 500, "5", 10 * time.Millisecond, 10 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &script{replies: []reply{
				{status: tt.status, body: `{}`, header: map[string]string{"Retry-After": tt.header}},
				{status: 200, body: okBody},
			}}
			ts := httptest.NewServer(srv)
			defer ts.Close()
			c, sl := newClient(t, ts.URL+"/v1")
			if _, err := c.Complete(t.Context(), userRequest()); err != nil {
				t.Fatalf("Complete: %v", err)
			}
			if len(sl.d) != 1 || sl.d[0] < tt.min || sl.d[0] > tt.max {
				t.Fatalf("waits %v, want one in [%s, %s]", sl.d, tt.min, tt.max)
			}
		})
	}
}

func TestUnitRetryAfterWaitsForReal(t *testing.T) {
	// Without the test's sleep hook: the client really waits what the
	// server asked before its next call.
	var (
		mu    sync.Mutex
		calls []time.Time
	)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls = append(calls, time.Now())
		n := len(calls)
		mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, okBody)
	}))
	defer ts.Close()
	c, err := vllm.New(ts.URL+"/v1", "m", vllm.WithBackoff(time.Millisecond, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Complete(t.Context(), userRequest()); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 2 {
		t.Fatalf("%d calls, want 2", len(calls))
	}
	if gap := calls[1].Sub(calls[0]); gap < time.Second {
		t.Fatalf("second call %s after the 429 with Retry-After: 1, want at least 1s", gap)
	}
}

func TestUnitRetryAfterBeyondTheDeadlineFailsAtOnce(t *testing.T) {
	srv := &script{replies: []reply{{status: 503, body: `{}`, header: map[string]string{"Retry-After": "30"}}}}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	c, sl := newClient(t, ts.URL+"/v1")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err := c.Complete(ctx, userRequest())
	if !errors.Is(err, council.ErrInvalid) || council.Retryable(err) {
		t.Fatalf("error = %v, want a permanent error (no time left for the wait)", err)
	}
	if !strings.Contains(err.Error(), "deadline leaves") {
		t.Errorf("error %q does not say the deadline leaves too little time", err)
	}
	if srv.count() != 1 || len(sl.d) != 0 {
		t.Fatalf("%d calls, %d waits; want 1 call and no wait", srv.count(), len(sl.d))
	}
}

func TestUnitDeadlineBoundsRetriesNotTheCount(t *testing.T) {
	// An outage of 6 failed attempts, more than WithRetries(1) allows:
	// with a deadline ahead the client keeps trying and the call succeeds.
	replies := []reply{}
	for _, st := range []int{503, 502, 504, 429, 503, 500} {
		replies = append(replies, reply{status: st, body: `{}`})
	}
	srv := &script{replies: append(replies, reply{status: 200, body: okBody})}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	c, sl := newClient(t, ts.URL+"/v1", vllm.WithRetries(1))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	got, err := c.Complete(ctx, userRequest())
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if got.Content != "hello" || srv.count() != 7 || len(sl.d) != 6 {
		t.Fatalf("content %q after %d calls and %d waits, want hello after 7 and 6", got.Content, srv.count(), len(sl.d))
	}

	// Without a deadline the count bounds them.
	srv = &script{replies: replies}
	ts2 := httptest.NewServer(srv)
	defer ts2.Close()
	c, _ = newClient(t, ts2.URL+"/v1", vllm.WithRetries(1))
	if _, err := c.Complete(t.Context(), userRequest()); !errors.Is(err, council.ErrUnavailable) || srv.count() != 2 {
		t.Fatalf("no deadline: error %v after %d calls, want ErrUnavailable after 2", err, srv.count())
	}
}

func TestUnitConnectionRefusedIsRetriedUntilTheDeadline(t *testing.T) {
	// A server that is not there: refused until the deadline, then the
	// error says the deadline ended it.
	ts := httptest.NewServer(http.NotFoundHandler())
	url := ts.URL
	ts.Close()
	c, err := vllm.New(url+"/v1", "m", vllm.WithRetries(0), vllm.WithBackoff(10*time.Millisecond, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.Complete(ctx, userRequest())
	if err == nil || council.Retryable(err) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want the deadline's end", err)
	}
	if took := time.Since(start); took < 400*time.Millisecond || took > 5*time.Second {
		t.Fatalf("gave up after %s, want about the 500ms deadline (retries(0) does not bound a call with a deadline)", took)
	}
}

// models is a server that answers each model by a status: modelStatus[m],
// 200 (echoing the model) when absent.
type models struct {
	mu     sync.Mutex
	status map[string]int
	asked  []string
}

func (m *models) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Model string `json:"model"`
	}
	raw, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(raw, &body)
	m.mu.Lock()
	m.asked = append(m.asked, body.Model)
	st, ok := m.status[body.Model]
	m.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if ok {
		w.WriteHeader(st)
		_, _ = io.WriteString(w, `{"error":{"message":"model busy"}}`)
		return
	}
	_, _ = io.WriteString(w, strings.Replace(okBody, `"model":"m"`, `"model":"`+body.Model+`"`, 1))
}

func TestUnitFallbackModels(t *testing.T) {
	tests := []struct {
		name      string
		status    map[string]int
		wantModel string
		wantAsked []string
		wantWaits int
		wantErr   error
	}{
		{"the first answers", nil, "a", []string{"a"}, 0, nil},
		{"503: the fallback answers at once", map[string]int{"a": 503}, "b", []string{"a", "b"}, 0, nil},
		{"429 of the first, 500 of the second: the third", map[string]int{"a": 429, "b": 500}, "c", []string{"a", "b", "c"}, 0, nil},
		{"a permanent error does not fall back", map[string]int{"a": 400}, "", []string{"a"}, 0, council.ErrInvalid},
		{
			"every model failing: a wait after each round, from the first again",
			map[string]int{"a": 503, "b": 503, "c": 503}, "", []string{"a", "b", "c", "a", "b", "c"}, 1, council.ErrUnavailable,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &models{status: tt.status}
			ts := httptest.NewServer(srv)
			defer ts.Close()
			c, sl := newClient(t, ts.URL+"/v1", vllm.WithAllowedModels("a", "b", "c"), vllm.WithRetries(5))
			req := userRequest()
			req.Model, req.Fallbacks = "a", []string{"b", "c"}
			// Two rounds without a deadline: WithRetries(5) allows 6 attempts.
			got, err := c.Complete(t.Context(), req)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error = %v, want %v", err, tt.wantErr)
				}
			} else if err != nil || got.Model != tt.wantModel {
				t.Fatalf("model %q, error %v; want %q", got.Model, err, tt.wantModel)
			}
			if d := cmp.Diff(tt.wantAsked, srv.asked); d != "" {
				t.Errorf("models asked (-want +got):\n%s", d)
			}
			if len(sl.d) != tt.wantWaits {
				t.Errorf("waits %v, want %d", sl.d, tt.wantWaits)
			}
		})
	}
}

func TestUnitFallbackWithoutRetries(t *testing.T) {
	// WithRetries(0) and no deadline: no retry, but each model is tried once.
	srv := &models{status: map[string]int{"a": 503}}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	c, sl := newClient(t, ts.URL+"/v1", vllm.WithAllowedModels("a", "b"), vllm.WithRetries(0))
	req := userRequest()
	req.Model, req.Fallbacks = "a", []string{"b"}
	got, err := c.Complete(t.Context(), req)
	if err != nil || got.Model != "b" || len(sl.d) != 0 {
		t.Fatalf("model %q, error %v, waits %v; want b at once", got.Model, err, sl.d)
	}
}

func TestUnitFallbackOutsideTheAllowListIsRefused(t *testing.T) {
	srv := &script{replies: []reply{{status: 200, body: okBody}}}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	c, _ := newClient(t, ts.URL+"/v1", vllm.WithAllowedModels("a"))
	req := userRequest()
	req.Model, req.Fallbacks = "a", []string{"gpt-9"}
	_, err := c.Complete(t.Context(), req)
	if !errors.Is(err, council.ErrInvalid) || !strings.Contains(err.Error(), `"gpt-9"`) {
		t.Fatalf("error = %v, want ErrInvalid naming gpt-9", err)
	}
	if srv.count() != 0 {
		t.Fatalf("%d calls, want none", srv.count())
	}
}
