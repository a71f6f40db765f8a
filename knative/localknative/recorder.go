package localknative

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

// Received is one event a Recorder took, with when it arrived.
type Received struct {
	Event event.Event
	At    time.Time
}

// Recorder is a CloudEvents sink on a loopback port that keeps every event
// it receives and answers 202: the local stand-in for a dead-letter sink or
// an Orchestrator's subscriber.
type Recorder struct {
	name   string
	log    *slog.Logger
	srv    *http.Server
	url    string
	mu     sync.Mutex
	events []Received
	notify chan struct{}
}

// NewRecorder starts a Recorder; name goes into its log lines.
func NewRecorder(name string, log *slog.Logger) (*Recorder, error) {
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("localknative: %s sink: %w", name, err)
	}
	r := &Recorder{name: name, log: log, url: "http://" + l.Addr().String(), notify: make(chan struct{})}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := r.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("sink stopped", "sink", name, "error", err)
		}
	}()
	return r, nil
}

// URL is where to send events.
func (r *Recorder) URL() string { return r.url }

// ServeHTTP takes one event, binary or structured.
func (r *Recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	msg := cehttp.NewMessageFromHttpRequest(req)
	defer func() { _ = msg.Finish(nil) }()
	ev, err := binding.ToEvent(req.Context(), msg)
	if err != nil {
		http.Error(w, "not a CloudEvent: "+err.Error(), http.StatusBadRequest)
		return
	}
	r.log.Info("sink received", "sink", r.name, "type", ev.Type(), "id", ev.ID(), "extensions", ev.Extensions())
	r.mu.Lock()
	r.events = append(r.events, Received{Event: *ev, At: time.Now()})
	close(r.notify)
	r.notify = make(chan struct{})
	r.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

// Events are the events received so far, in arrival order.
func (r *Recorder) Events() []Received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Received(nil), r.events...)
}

// Wait blocks until match holds for the events received, or ctx ends.
func (r *Recorder) Wait(ctx context.Context, match func([]Received) bool) error {
	for {
		r.mu.Lock()
		evs, ch := append([]Received(nil), r.events...), r.notify
		r.mu.Unlock()
		if match(evs) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("localknative: %s sink: %w", r.name, ctx.Err())
		}
	}
}

// Close stops the Recorder.
func (r *Recorder) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return r.srv.Shutdown(ctx)
}
