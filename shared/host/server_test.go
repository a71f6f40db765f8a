package host_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/google/go-cmp/cmp"

	"council.dev/shared/council"
	"council.dev/shared/host"
)

// running is a server started by startServer.
type running struct {
	url    string
	cancel context.CancelFunc
	done   chan error
	logs   *syncBuffer
}

// startServer serves h on a free loopback port until the test ends.
func startServer(t *testing.T, h host.Handler, opts ...host.Option) *running {
	t.Helper()
	logs := &syncBuffer{}
	opts = append([]host.Option{host.WithLogger(host.NewLogger("debug", logs))}, opts...)
	srv, err := host.NewHTTPServer("127.0.0.1:0", h, opts...)
	if err != nil {
		t.Fatalf("NewHTTPServer: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{url: "http://" + ln.Addr().String(), cancel: cancel, done: make(chan error, 1), logs: logs}
	go func() { r.done <- srv.ServeListener(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done: //nolint:errcheck // waits for Serve to return; the tests that check its result read it and put it back
		case <-time.After(10 * time.Second):
			t.Error("server did not stop within 10s")
		}
	})
	return r
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testEvent(t *testing.T, id, typ string) event.Event {
	t.Helper()
	e := event.New()
	e.SetID(id)
	e.SetType(typ)
	e.SetSource("council.dev/test")
	e.SetSubject("task-1")
	e.SetTime(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	if err := e.SetData(event.ApplicationJSON, map[string]string{"question": "why?"}); err != nil {
		t.Fatalf("SetData: %v", err)
	}
	return e
}

// postBinary sends e in binary mode.
func postBinary(t *testing.T, url string, e event.Event) *http.Response {
	t.Helper()
	req, err := cehttp.NewHTTPRequestFromEvent(t.Context(), url, e)
	if err != nil {
		t.Fatalf("build request: %v", err)
	}
	return do(t, req)
}

// postStructured sends e in structured mode.
func postStructured(t *testing.T, url string, e event.Event) *http.Response {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return postRaw(t, url, http.Header{"Content-Type": {"application/cloudevents+json; charset=utf-8"}}, b)
}

func postRaw(t *testing.T, url string, h http.Header, body []byte) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("build request: %v", err)
	}
	req.Header = h
	return do(t, req)
}

func do(t *testing.T, req *http.Request) *http.Response {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatalf("build request: %v", err)
	}
	resp := do(t, req)
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// errorReply reads the JSON error body.
type errorReply struct {
	Error     string `json:"error"`
	Retryable bool   `json:"retryable"`
}

func readError(t *testing.T, resp *http.Response) errorReply {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error reply Content-Type = %q, want application/json", ct)
	}
	var r errorReply
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("decode error reply: %v", err)
	}
	return r
}

// echo replies with a "<type>.reply" event carrying the request's data.
func echo(_ context.Context, e event.Event) (*event.Event, error) {
	r := event.New()
	r.SetID("reply-" + e.ID())
	r.SetType(e.Type() + ".reply")
	r.SetSource("council.dev/echo")
	r.SetSubject(e.Subject())
	if err := r.SetData(event.ApplicationJSON, e.Data()); err != nil {
		return nil, err
	}
	return &r, nil
}

// received is what a test sees of an event, reply or request.
type received struct {
	ID, Type, Source, Subject, Data string
}

func summary(e event.Event) received {
	return received{ID: e.ID(), Type: e.Type(), Source: e.Source(), Subject: e.Subject(), Data: string(e.Data())}
}

func TestServerDeliversEventsAndReplies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		post func(*testing.T, string, event.Event) *http.Response
	}{
		{"binary", postBinary},
		{"structured", postStructured},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var (
				mu  sync.Mutex
				got []received
			)
			srv := startServer(t, func(ctx context.Context, e event.Event) (*event.Event, error) {
				mu.Lock()
				got = append(got, summary(e))
				mu.Unlock()
				return echo(ctx, e)
			})
			in := testEvent(t, "ev-1", "dev.council.proposal.requested.v1")

			resp := tt.post(t, srv.url+"/", in)

			if resp.StatusCode != http.StatusOK {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status = %d (%s), want 200", resp.StatusCode, b)
			}
			if resp.Header.Get("Ce-Id") == "" {
				t.Errorf("reply is not in binary mode: headers %v", resp.Header)
			}
			reply, err := cehttp.NewEventFromHTTPResponse(resp)
			if err != nil {
				t.Fatalf("decode reply: %v", err)
			}
			wantIn := received{ID: "ev-1", Type: "dev.council.proposal.requested.v1", Source: "council.dev/test",
				Subject: "task-1", Data: `{"question":"why?"}`}
			mu.Lock()
			defer mu.Unlock()
			if diff := cmp.Diff([]received{wantIn}, got); diff != "" {
				t.Errorf("handler got (-want +got):\n%s", diff)
			}
			wantReply := received{ID: "reply-ev-1", Type: "dev.council.proposal.requested.v1.reply",
				Source: "council.dev/echo", Subject: "task-1", Data: `{"question":"why?"}`}
			if diff := cmp.Diff(wantReply, summary(*reply)); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
		})
	}
}

func TestServerAnswers202WithoutReply(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(context.Context, event.Event) (*event.Event, error) { return nil, nil })

	resp := postBinary(t, srv.url, testEvent(t, "ev-1", "dev.council.sweep.tick.v1"))

	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted || len(b) != 0 {
		t.Errorf("got %d %q, want 202 with an empty body", resp.StatusCode, b)
	}
}

func TestServerMapsHandlerErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"invalid", council.Invalidf("task has no question"), http.StatusBadRequest},
		{"not found", fmt.Errorf("load: %w", council.ErrNotFound), http.StatusUnprocessableEntity},
		{"conflict", fmt.Errorf("update: %w", council.ErrConflict), http.StatusUnprocessableEntity},
		{"unavailable", council.Unavailablef("llm: connection refused"), http.StatusServiceUnavailable},
		{"rate limited", fmt.Errorf("llm: %w: %w", council.ErrUnavailable, host.ErrRateLimited), http.StatusTooManyRequests},
		{"unclassified", errors.New("boom"), http.StatusInternalServerError},
		{"deadline", context.DeadlineExceeded, http.StatusInternalServerError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, func(context.Context, event.Event) (*event.Event, error) { return nil, tt.err })

			resp := postBinary(t, srv.url, testEvent(t, "ev-1", "dev.council.critique.requested.v1"))

			if resp.StatusCode != tt.want {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.want)
			}
			want := errorReply{Error: tt.err.Error(), Retryable: council.Retryable(tt.err)}
			if diff := cmp.Diff(want, readError(t, resp)); diff != "" {
				t.Errorf("error body (-want +got):\n%s", diff)
			}
		})
	}
}

func TestServerRejectsWhatIsNotACloudEvent(t *testing.T) {
	t.Parallel()
	binaryHeaders := func(drop string) http.Header {
		h := http.Header{
			"Content-Type":   {"application/json"},
			"Ce-Specversion": {"1.0"},
			"Ce-Id":          {"ev-1"},
			"Ce-Source":      {"council.dev/test"},
			"Ce-Type":        {"dev.council.sweep.tick.v1"},
		}
		h.Del(drop)
		return h
	}
	tests := []struct {
		name     string
		header   http.Header
		body     string
		wantText string
	}{
		{"plain json", http.Header{"Content-Type": {"application/json"}}, `{"question":"why?"}`, "not a CloudEvent"},
		{"no content type, empty body", http.Header{}, ``, "not a CloudEvent"},
		{"structured, broken json", http.Header{"Content-Type": {"application/cloudevents+json"}}, `{"specversion":`, "cannot decode CloudEvent"},
		{"structured, missing id", http.Header{"Content-Type": {"application/cloudevents+json"}},
			`{"specversion":"1.0","source":"s","type":"t"}`, "id"},
		{"binary, missing type", binaryHeaders("Ce-Type"), `{}`, "type"},
		{"unknown spec version", http.Header{"Content-Type": {"application/json"}, "Ce-Specversion": {"0.1"},
			"Ce-Id": {"x"}, "Ce-Source": {"s"}, "Ce-Type": {"t"}}, `{}`, `specversion "0.1" is not supported: want 1.0`},
		{"batch", http.Header{"Content-Type": {"application/cloudevents-batch+json"}}, `[]`, "batched"},
	}
	srv := startServer(t, echo)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := postRaw(t, srv.url, tt.header, []byte(tt.body))

			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("status = %d, want 400", resp.StatusCode)
			}
			got := readError(t, resp)
			if got.Retryable || !strings.Contains(got.Error, tt.wantText) {
				t.Errorf("error body = %+v, want retryable=false and a message containing %q", got, tt.wantText)
			}
		})
	}

	resp := postBinary(t, srv.url, testEvent(t, "ev-after", "dev.council.sweep.tick.v1"))
	if resp.StatusCode != http.StatusOK {
		t.Errorf("after bad requests: status = %d, want 200", resp.StatusCode)
	}
}

func TestServerRejectsOversizedBody(t *testing.T) {
	t.Parallel()
	srv := startServer(t, echo, host.WithMaxBodyBytes(256))
	big := testEvent(t, "ev-big", "dev.council.sweep.tick.v1")
	if err := big.SetData(event.ApplicationJSON, map[string]string{"pad": strings.Repeat("x", 1024)}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		request func() *http.Request
	}{
		{"with content length", func() *http.Request {
			req, err := cehttp.NewHTTPRequestFromEvent(t.Context(), srv.url, big)
			if err != nil {
				t.Fatal(err)
			}
			return req
		}},
		{"chunked", func() *http.Request {
			req, err := cehttp.NewHTTPRequestFromEvent(t.Context(), srv.url, big)
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = -1
			req.Body = io.NopCloser(bytes.NewReader(big.Data()))
			req.GetBody = nil
			return req
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := do(t, tt.request())

			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Errorf("status = %d, want 413", resp.StatusCode)
			}
			if got := readError(t, resp); got.Retryable || !strings.Contains(got.Error, "too large") {
				t.Errorf("error body = %+v, want retryable=false and 'too large'", got)
			}
		})
	}

	resp := postBinary(t, srv.url, testEvent(t, "ev-small", "dev.council.sweep.tick.v1"))
	if resp.StatusCode != http.StatusOK {
		t.Errorf("small event after oversized ones: status = %d, want 200", resp.StatusCode)
	}
}

func TestServerRejectsInvalidReplyEvent(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(context.Context, event.Event) (*event.Event, error) {
		r := event.New() // no id, source or type
		return &r, nil
	})

	resp := postBinary(t, srv.url, testEvent(t, "ev-1", "dev.council.sweep.tick.v1"))

	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("status = %d, want 500", resp.StatusCode)
	}
	if got := readError(t, resp); !got.Retryable || !strings.Contains(got.Error, "reply event") {
		t.Errorf("error body = %+v, want retryable and 'reply event'", got)
	}
}

func TestServerRecoversFromPanic(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(ctx context.Context, e event.Event) (*event.Event, error) {
		if e.ID() == "ev-panic" {
			panic("secret state")
		}
		return echo(ctx, e)
	})

	resp := postBinary(t, srv.url, testEvent(t, "ev-panic", "dev.council.sweep.tick.v1"))

	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("status = %d, want 500", resp.StatusCode)
	}
	if diff := cmp.Diff(errorReply{Error: "internal error", Retryable: true}, readError(t, resp)); diff != "" {
		t.Errorf("error body (-want +got):\n%s", diff)
	}
	waitForLog(t, srv.logs, `"handler panicked"`)

	resp = postBinary(t, srv.url, testEvent(t, "ev-next", "dev.council.sweep.tick.v1"))
	if resp.StatusCode != http.StatusOK {
		t.Errorf("request after the panic: status = %d, want 200", resp.StatusCode)
	}
}

func TestServerLogsOneLinePerEvent(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(context.Context, event.Event) (*event.Event, error) {
		return nil, council.Unavailablef("llm down")
	})

	postBinary(t, srv.url, testEvent(t, "ev-log", "dev.council.proposal.requested.v1"))

	line := waitForLog(t, srv.logs, `"id":"ev-log"`)
	var got map[string]any
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("log line %q: %v", line, err)
	}
	if _, ok := got["duration"]; !ok {
		t.Errorf("log line has no duration: %s", line)
	}
	delete(got, "time")
	delete(got, "duration")
	want := map[string]any{
		"level": "ERROR", "msg": "event", "id": "ev-log", "type": "dev.council.proposal.requested.v1",
		"subject": "task-1", "source": "council.dev/test", "status": float64(503), "outcome": "retry",
		"error": "unavailable: llm down",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("log line (-want +got):\n%s", diff)
	}
}

// waitForLog returns the first log line containing s; the server logs after
// it answers, so the line may come a moment after the response.
func waitForLog(t *testing.T, logs *syncBuffer, s string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for line := range strings.SplitSeq(logs.String(), "\n") {
			if strings.Contains(line, s) {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line containing %s in:\n%s", s, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHealthRoutes(t *testing.T) {
	t.Parallel()
	var (
		mu       sync.Mutex
		notReady error
	)
	srv := startServer(t, echo,
		host.WithDrainDelay(time.Second),
		host.WithReadiness(func(context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			return notReady
		}))

	check := func(step, path string, want int) {
		t.Helper()
		if got, body := get(t, srv.url+path); got != want {
			t.Errorf("%s: GET %s = %d %q, want %d", step, path, got, body, want)
		}
	}
	check("serving", "/health/readiness", http.StatusOK)
	check("serving", "/health/liveness", http.StatusOK)

	mu.Lock()
	notReady = errors.New("store unreachable")
	mu.Unlock()
	check("check failing", "/health/readiness", http.StatusServiceUnavailable)
	check("check failing", "/health/liveness", http.StatusOK)

	mu.Lock()
	notReady = nil
	mu.Unlock()
	check("check passing again", "/health/readiness", http.StatusOK)

	srv.cancel()
	// During the drain delay the server still answers, and readiness says 503.
	deadline := time.Now().Add(900 * time.Millisecond)
	for {
		code, _ := get(t, srv.url+"/health/readiness")
		if code == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readiness still %d after cancel", code)
		}
		time.Sleep(5 * time.Millisecond)
	}
	check("draining", "/health/liveness", http.StatusOK)
	resp := postBinary(t, srv.url, testEvent(t, "ev-drain", "dev.council.sweep.tick.v1"))
	if resp.StatusCode != http.StatusOK {
		t.Errorf("event during the drain delay: status = %d, want 200", resp.StatusCode)
	}
	select {
	case err := <-srv.done:
		if err != nil {
			t.Errorf("Serve = %v, want nil", err)
		}
		srv.done <- err // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the drain")
	}
}

func TestGracefulShutdownWaitsForInFlightEvent(t *testing.T) {
	t.Parallel()
	started, release := make(chan struct{}), make(chan struct{})
	srv := startServer(t, func(ctx context.Context, e event.Event) (*event.Event, error) {
		close(started)
		<-release
		return echo(ctx, e)
	})
	respc := make(chan int, 1)
	go func() {
		req, err := cehttp.NewHTTPRequestFromEvent(context.Background(), srv.url, testEvent(t, "ev-slow", "dev.council.sweep.tick.v1"))
		if err != nil {
			respc <- -1
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			respc <- -1
			return
		}
		_ = resp.Body.Close()
		respc <- resp.StatusCode
	}()
	<-started

	srv.cancel()
	select {
	case err := <-srv.done:
		t.Fatalf("Serve returned %v while an event was in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)

	if code := <-respc; code != http.StatusOK {
		t.Errorf("in-flight event: status = %d, want 200", code)
	}
	select {
	case err := <-srv.done:
		if err != nil {
			t.Errorf("Serve = %v, want nil", err)
		}
		srv.done <- err
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the in-flight event finished")
	}
}

func TestShutdownGraceCancelsStragglers(t *testing.T) {
	t.Parallel()
	started, cancelled := make(chan struct{}), make(chan struct{})
	srv := startServer(t, func(ctx context.Context, _ event.Event) (*event.Event, error) {
		close(started)
		<-ctx.Done()
		close(cancelled)
		return nil, ctx.Err()
	}, host.WithShutdownGrace(100*time.Millisecond))
	go func() {
		req, err := cehttp.NewHTTPRequestFromEvent(context.Background(), srv.url, testEvent(t, "ev-stuck", "dev.council.sweep.tick.v1"))
		if err == nil {
			if resp, err := http.DefaultClient.Do(req); err == nil {
				_ = resp.Body.Close()
			}
		}
	}()
	<-started

	srv.cancel()

	select {
	case err := <-srv.done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Serve = %v, want an error wrapping context.DeadlineExceeded", err)
		}
		srv.done <- err
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not give up after the grace period")
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Error("the straggler's context was not cancelled")
	}
}

func TestServeFailsWhenAddressIsTaken(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ln.Close(); err != nil {
			t.Errorf("close listener: %v", err)
		}
	})
	srv, err := host.NewHTTPServer(ln.Addr().String(), echo)
	if err != nil {
		t.Fatal(err)
	}

	err = srv.Serve(t.Context())

	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Errorf("Serve = %v, want an error naming %s", err, ln.Addr())
	}
}

func TestServerExtraRoutes(t *testing.T) {
	t.Parallel()
	srv := startServer(t, echo, host.WithRoute("GET /deliberations/{id}", http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "deliberation "+r.PathValue("id"))
		})))

	code, body := get(t, srv.url+"/deliberations/d-1")

	if code != http.StatusOK || body != "deliberation d-1" {
		t.Errorf("GET /deliberations/d-1 = %d %q, want 200 %q", code, body, "deliberation d-1")
	}
}

func TestNewHTTPServerRejectsBadOptions(t *testing.T) {
	t.Parallel()
	ok := http.NotFoundHandler()
	tests := []struct {
		name string
		h    host.Handler
		opts []host.Option
	}{
		{"nil handler", nil, nil},
		{"nil logger", echo, []host.Option{host.WithLogger(nil)}},
		{"zero body limit", echo, []host.Option{host.WithMaxBodyBytes(0)}},
		{"zero write timeout", echo, []host.Option{host.WithWriteTimeout(0)}},
		{"negative drain delay", echo, []host.Option{host.WithDrainDelay(-time.Second)}},
		{"zero grace", echo, []host.Option{host.WithShutdownGrace(0)}},
		{"nil readiness check", echo, []host.Option{host.WithReadiness(nil)}},
		{"nil route handler", echo, []host.Option{host.WithRoute("GET /x", nil)}},
		{"route conflicts with health", echo, []host.Option{host.WithRoute("GET /health/liveness", ok)}},
		{"malformed route", echo, []host.Option{host.WithRoute("GET", ok)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := host.NewHTTPServer(":0", tt.h, tt.opts...)
			if !errors.Is(err, council.ErrInvalid) {
				t.Errorf("NewHTTPServer = %v, want an error wrapping council.ErrInvalid", err)
			}
		})
	}
}
