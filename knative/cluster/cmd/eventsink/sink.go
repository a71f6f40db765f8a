package main

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

// maxBody caps a request body; council's largest events (a completed
// deliberation's ranking) are far smaller.
const maxBody = 8 << 20

// maxEvents caps what the sink keeps; the oldest go first.
const maxEvents = 100_000

// record is one received event as GET /events returns it.
type record struct {
	ID              string          `json:"id"`
	Type            string          `json:"type"`
	Source          string          `json:"source"`
	Subject         string          `json:"subject,omitempty"`
	Time            *time.Time      `json:"time,omitempty"`
	DataContentType string          `json:"datacontenttype,omitempty"`
	Extensions      map[string]any  `json:"extensions,omitempty"`
	Data            json.RawMessage `json:"data,omitempty"`
	ReceivedAt      time.Time       `json:"received_at"`
}

// sink records the events it receives.
type sink struct {
	log *slog.Logger
	now func() time.Time

	mu     sync.Mutex
	events []record
}

func newSink(log *slog.Logger, now func() time.Time) *sink {
	return &sink{log: log, now: now}
}

func (s *sink) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /", s.receive)
	mux.HandleFunc("GET /events", s.list)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	return mux
}

// receive records one CloudEvent, binary or structured.
func (s *sink) receive(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	msg := cehttp.NewMessageFromHttpRequest(r)
	defer func() { _ = msg.Finish(nil) }()
	if enc := msg.ReadEncoding(); enc != binding.EncodingBinary && enc != binding.EncodingStructured {
		s.log.Warn("event", "outcome", "rejected", "error", "not a single CloudEvent", "content_type", r.Header.Get("Content-Type"))
		http.Error(w, "not a single CloudEvent (binary or structured mode)", http.StatusBadRequest)
		return
	}
	e, err := binding.ToEvent(r.Context(), msg)
	if err != nil {
		s.log.Warn("event", "outcome", "rejected", "error", err.Error())
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rec := record{
		ID: e.ID(), Type: e.Type(), Source: e.Source(), Subject: e.Subject(),
		DataContentType: e.DataContentType(), Extensions: e.Extensions(), ReceivedAt: s.now().UTC(),
	}
	if t := e.Time(); !t.IsZero() {
		rec.Time = &t
	}
	if d := e.Data(); len(d) > 0 {
		if json.Valid(d) {
			rec.Data = d
		} else if b, err := json.Marshal(string(d)); err == nil {
			rec.Data = b // not JSON: kept as a JSON string
		}
	}
	s.mu.Lock()
	if len(s.events) >= maxEvents {
		s.events = s.events[1:]
	}
	s.events = append(s.events, rec)
	s.mu.Unlock()
	s.log.Info("event", "id", rec.ID, "type", rec.Type, "source", rec.Source, "subject", rec.Subject, "outcome", "recorded")
	w.WriteHeader(http.StatusAccepted)
}

// list writes every recorded event as a JSON array.
func (s *sink) list(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	out := make([]record, len(s.events))
	copy(out, s.events)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(out); err != nil {
		s.log.Warn("list events", "error", err.Error())
	}
}
