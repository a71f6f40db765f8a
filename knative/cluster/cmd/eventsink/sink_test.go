package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/google/go-cmp/cmp"
)

func TestSink(t *testing.T) {
	at := time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC)
	srv := httptest.NewServer(newSink(slog.New(slog.DiscardHandler), func() time.Time { return at }).routes())
	t.Cleanup(srv.Close)

	post := func(t *testing.T, e event.Event, structured bool) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if structured {
			ctx = binding.WithForceStructured(ctx)
		}
		if err := cehttp.WriteRequest(ctx, binding.ToMessage(&e), req); err != nil {
			t.Fatal(err)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		return res.StatusCode
	}
	mk := func(id string, data any) event.Event {
		e := event.New()
		e.SetID(id)
		e.SetType("dev.council.deliberation.completed.v1")
		e.SetSource("council.dev/execute")
		e.SetSubject("task-1")
		e.SetTime(at.Add(-time.Second))
		e.SetExtension("knativeerrorcode", "400")
		if err := e.SetData(event.ApplicationJSON, data); err != nil {
			t.Fatal(err)
		}
		return e
	}

	if got := post(t, mk("binary-1", map[string]any{"deliberation_id": "dlb-1"}), false); got != http.StatusAccepted {
		t.Fatalf("binary: status %d, want 202", got)
	}
	if got := post(t, mk("structured-1", map[string]any{"deliberation_id": "dlb-2"}), true); got != http.StatusAccepted {
		t.Fatalf("structured: status %d, want 202", got)
	}
	res, err := http.Post(srv.URL, "text/plain", bytes.NewReader([]byte("hello")))
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("plain POST: status %d, want 400", res.StatusCode)
	}

	res, err = http.Get(srv.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	var got []map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("GET /events: %v: %s", err, body)
	}
	want := []map[string]any{
		{
			"id": "binary-1", "type": "dev.council.deliberation.completed.v1", "source": "council.dev/execute",
			"subject": "task-1", "time": "2026-12-02T06:59:59Z", "datacontenttype": "application/json",
			"extensions": map[string]any{"knativeerrorcode": "400"}, "data": map[string]any{"deliberation_id": "dlb-1"},
			"received_at": "2026-12-02T07:00:00Z",
		},
		{
			"id": "structured-1", "type": "dev.council.deliberation.completed.v1", "source": "council.dev/execute",
			"subject": "task-1", "time": "2026-12-02T06:59:59Z", "datacontenttype": "application/json",
			"extensions": map[string]any{"knativeerrorcode": "400"}, "data": map[string]any{"deliberation_id": "dlb-2"},
			"received_at": "2026-12-02T07:00:00Z",
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GET /events (-want +got):\n%s", diff)
	}

	res, err = http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz: %d, want 200", res.StatusCode)
	}
}
