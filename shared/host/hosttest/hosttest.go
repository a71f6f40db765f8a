// Package hosttest serves a function's Handle through the real HTTP host
// for tests: post a CloudEvent, get the status, the reply event and the
// error body back.
package hosttest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"

	"council.dev/events"
	"council.dev/shared/host"
)

// Response is what the host answered.
type Response struct {
	Status int
	// Reply is the reply event, nil when there is none.
	Reply *event.Event
	// Error is the error message of a failed event.
	Error     string
	Retryable bool
}

// Server serves h through host.HTTPServer on an httptest server.
func Server(t testing.TB, h host.Handler) *httptest.Server {
	t.Helper()
	srv, err := host.NewHTTPServer("127.0.0.1:0", h)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts
}

// Post sends e in structured mode to url and reads the answer.
func Post(t testing.TB, url string, e event.Event) Response {
	t.Helper()
	body, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/cloudevents+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }() // a read body has nothing left to report on close
	out := Response{Status: resp.StatusCode}
	if resp.StatusCode >= 300 {
		raw, _ := io.ReadAll(resp.Body)
		e, err := events.DecodeErrorReply(raw)
		if err != nil {
			t.Fatalf("error body %q is not the contract's error reply: %v", raw, err)
		}
		out.Error, out.Retryable = e.Error, e.Retryable
		return out
	}
	if resp.StatusCode == http.StatusOK {
		reply, err := binding.ToEvent(t.Context(), cehttp.NewMessageFromHttpResponse(resp))
		if err != nil {
			t.Fatalf("reply is not a CloudEvent: %v", err)
		}
		out.Reply = reply
	}
	return out
}
