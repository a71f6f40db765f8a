package vllm

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// go-openai's errors carry the status code and the body, not the response
// headers, so the server's Retry-After is read on the way in: the client's
// HTTP transport is wrapped by retryAfterTransport, which records the
// header of a 429 or 503 answer in the retryHint the attempt put in the
// request's context.

// retryHintKey is the context key of an attempt's *retryHint.
type retryHintKey struct{}

// retryHint is what the server asked of the next attempt: wait after.
type retryHint struct{ after time.Duration }

// retryAfterTransport records Retry-After of 429 and 503 answers.
type retryAfterTransport struct {
	rt  http.RoundTripper
	now func() time.Time
}

func (t retryAfterTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(r)
	if err != nil || resp == nil {
		return resp, err
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		if h, ok := r.Context().Value(retryHintKey{}).(*retryHint); ok {
			if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), t.now()); ok {
				h.after = d
			}
		}
	}
	return resp, nil
}

// withRetryAfter returns a copy of hc whose transport records Retry-After.
func withRetryAfter(hc *http.Client, now func() time.Time) *http.Client {
	c := *hc
	rt := c.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	c.Transport = retryAfterTransport{rt: rt, now: now}
	return &c
}

// maxRetryAfter bounds what a server may ask for: a Retry-After of a day
// is a server's mistake, and the caller's deadline bounds the wait anyway.
const maxRetryAfter = time.Hour

// parseRetryAfter reads a Retry-After value (RFC 9110 §10.2.3): a number of
// seconds or an HTTP date, relative to now. A date in the past is 0; an
// unreadable value is not ok.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		return min(time.Duration(min(n, int64(maxRetryAfter/time.Second)))*time.Second, maxRetryAfter), true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return min(max(t.Sub(now), 0), maxRetryAfter), true
}

var _ http.RoundTripper = retryAfterTransport{}
