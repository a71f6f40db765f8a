package host_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"

	"council.dev/events"
	"council.dev/shared/host"
)

// FuzzReceiver posts arbitrary requests — content type, CloudEvents
// headers of binary mode, body in either mode — to the HTTP CloudEvents
// receiver in front of the real decoders: it never panics and never answers
// 5xx for what the sender got wrong; a refused event is a non-retriable 4xx.
func FuzzReceiver(f *testing.F) {
	structured, err := events.LoadFixture("proposal.requested.v1/valid/stage0.json")
	if err != nil {
		f.Fatal(err)
	}
	body, err := events.EncodeStructured(structured)
	if err != nil {
		f.Fatal(err)
	}
	f.Add("application/cloudevents+json", "", "", "", "", body)
	f.Add("application/json", "1.0", "e-1", "fuzz", events.TypeProposalRequested, structured.Data())
	f.Add("application/json", "1.0", "e-2", "fuzz", events.TypeDeliberationRequested, []byte(`{"task_id":"t"}`))
	f.Add("application/cloudevents-batch+json", "", "", "", "", []byte("["+string(body)+"]"))
	f.Add("application/cloudevents+json", "", "", "", "", []byte(`{"specversion":"0.3","id":"x","source":"s","type":"t"}`))
	f.Add("text/plain", "1.0", "", "", "", []byte("hello"))
	f.Add("application/json", "2.0", "x", "s", "t", []byte("{}"))

	decoders := map[string]func(event.Event) error{
		events.TypeProposalRequested: func(e event.Event) error { _, err := events.DecodeProposalRequested(e); return err },
		events.TypeCritiqueRequested: func(e event.Event) error { _, err := events.DecodeCritiqueRequested(e); return err },
		events.TypeDeliberationRequested: func(e event.Event) error {
			_, err := events.DecodeRequest(e)
			return err
		},
	}
	srv, err := host.NewHTTPServer("127.0.0.1:0", func(_ context.Context, e event.Event) (*event.Event, error) {
		if decode, ok := decoders[e.Type()]; ok {
			return nil, decode(e)
		}
		return nil, nil
	})
	if err != nil {
		f.Fatal(err)
	}
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, contentType, specversion, id, source, typ string, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		for k, v := range map[string]string{
			"Content-Type": contentType, "Ce-Specversion": specversion, "Ce-Id": id, "Ce-Source": source, "Ce-Type": typ,
		} {
			if v != "" {
				req.Header[k] = []string{v}
			}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch code := rec.Code; {
		case code >= 200 && code < 300:
		case code >= 400 && code < 500:
			if code == http.StatusTooManyRequests || code == http.StatusRequestTimeout {
				t.Fatalf("answer %d (retryable) for a bad request: %s", code, rec.Body)
			}
		default:
			t.Fatalf("answer %d for content type %q, ce-type %q, body %q: %s", code, contentType, typ, body, rec.Body)
		}
	})
}
