package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"council.dev/events"
	"council.dev/shared/council"
)

// errPanic marks a handler that panicked; its text never leaves the process.
var errPanic = errors.New("handler panicked")

// serveEvent is POST /: decode one CloudEvent, run the handler, answer.
func (s *HTTPServer) serveEvent(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if !s.authenticate(w, r, start) {
		return
	}
	e, err := s.readEvent(w, r)
	if err != nil {
		status := StatusFor(err)
		writeError(w, status, err.Error())
		s.logger.LogAttrs(r.Context(), levelFor(status), "event",
			slog.Int("status", status),
			slog.String("outcome", outcome(status)),
			slog.Duration("duration", time.Since(start)),
			slog.String("remote", r.RemoteAddr),
			slog.String("error", err.Error()))
		return
	}

	traceFromHeader(r.Header, e)
	reply, err := s.invoke(r.Context(), *e)
	if err == nil && reply != nil {
		if verr := reply.Validate(); verr != nil {
			err = fmt.Errorf("host: reply event: %w", verr) // a bug in the function: retried, then dead-lettered
		}
	}

	status := StatusFor(err)
	attrs := []slog.Attr{
		slog.String("id", e.ID()),
		slog.String("type", e.Type()),
		slog.String("subject", e.Subject()),
		slog.String("source", e.Source()),
	}
	switch {
	case err != nil:
		msg := err.Error()
		if errors.Is(err, errPanic) {
			msg = "internal error"
		}
		writeError(w, status, msg)
		attrs = append(attrs, slog.String("error", err.Error()))
	case reply == nil:
		status = http.StatusAccepted
		w.WriteHeader(status)
	default:
		attrs = append(attrs, slog.String("reply_type", reply.Type()), slog.String("reply_id", reply.ID()))
		werr := cehttp.WriteResponseWriter(binding.WithForceBinary(r.Context()), binding.ToMessage(reply), status, w)
		if werr != nil {
			attrs = append(attrs, slog.String("error", "write reply: "+werr.Error()))
		}
	}
	attrs = append(attrs,
		slog.Int("status", status),
		slog.String("outcome", outcome(status)),
		slog.Duration("duration", time.Since(start)))
	s.logger.LogAttrs(r.Context(), levelFor(status), "event", attrs...)
}

// readEvent reads the body within the size limit and decodes one CloudEvent
// in binary or structured mode. Its errors wrap council.ErrInvalid, or
// *http.MaxBytesError for an oversized body.
func (s *HTTPServer) readEvent(w http.ResponseWriter, r *http.Request) (*event.Event, error) {
	if r.ContentLength > s.maxBodyBytes {
		return nil, fmt.Errorf("host: read event: body of %d bytes: %w: %w",
			r.ContentLength, council.ErrInvalid, &http.MaxBytesError{Limit: s.maxBodyBytes})
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBodyBytes))
	if err != nil {
		return nil, fmt.Errorf("host: read event: %w: %w", council.ErrInvalid, err)
	}
	msg := cehttp.NewMessage(r.Header, io.NopCloser(bytes.NewReader(body)))
	defer func() { _ = msg.Finish(nil) }()
	switch msg.ReadEncoding() {
	case binding.EncodingBatch:
		return nil, fmt.Errorf("host: read event: %w", council.Invalidf("batched CloudEvents are not supported; send one event per request"))
	case binding.EncodingUnknown:
		if v := r.Header.Get("Ce-Specversion"); v != "" {
			return nil, fmt.Errorf("host: read event: %w", council.Invalidf(
				"CloudEvents specversion %q is not supported: want 1.0 (or 0.3)", v))
		}
		return nil, fmt.Errorf("host: read event: %w", council.Invalidf(
			"request is not a CloudEvent: want binary mode (ce-specversion, ce-id, ce-source, ce-type headers) "+
				"or structured mode (Content-Type: application/cloudevents+json), got Content-Type %q",
			r.Header.Get("Content-Type")))
	}
	e, err := binding.ToEvent(r.Context(), msg)
	if err != nil {
		return nil, fmt.Errorf("host: read event: %w", council.Invalidf("cannot decode CloudEvent: %v", err))
	}
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("host: read event: %w", council.Invalidf("%v", err))
	}
	return e, nil
}

// invoke runs the handler, turning a panic into an error wrapping errPanic
// and logging its stack, so that one bad event never stops the server.
func (s *HTTPServer) invoke(ctx context.Context, e event.Event) (reply *event.Event, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.logger.Error("handler panicked", "id", e.ID(), "type", e.Type(),
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			reply, err = nil, fmt.Errorf("host: %w: %v", errPanic, p)
		}
	}()
	return s.handler(ctx, e)
}

// outcome names a status for the log line.
func outcome(status int) string {
	switch {
	case status == http.StatusOK:
		return "replied"
	case status < 300:
		return "accepted"
	case retryableStatus(status):
		return "retry"
	default:
		return "rejected"
	}
}

func levelFor(status int) slog.Level {
	switch {
	case status < 400:
		return slog.LevelInfo
	case status < 500 && status != http.StatusTooManyRequests:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

// traceFromHeader gives e the W3C trace context of the request's
// traceparent and tracestate headers (Knative's broker sets them) when the
// event carries none in its distributed-tracing extension (ce-traceparent
// in binary mode, traceparent in structured mode), so that the handler
// continues the sender's trace either way.
func traceFromHeader(h http.Header, e *event.Event) {
	if _, ok := e.Extensions()[events.ExtTraceParent]; ok {
		return
	}
	if tp := h.Get("Traceparent"); tp != "" {
		e.SetExtension(events.ExtTraceParent, tp)
		if ts := h.Get("Tracestate"); ts != "" {
			e.SetExtension(events.ExtTraceState, ts)
		}
	}
}
