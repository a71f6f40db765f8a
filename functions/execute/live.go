package execute

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"council.dev/events"
	"council.dev/shared/council"
)

// The live routes: a deliberation's progress and tokens as Server-Sent
// Events, and a page that shows them.
const (
	RouteEvents = "GET /deliberations/{id}/events"
	RouteView   = "GET /deliberations/{id}/view"
)

// StateWatcher follows the stored state of one deliberation
// (natsjs.Store.Watch): fn gets every version stored from now on, the
// current one first, until ctx ends (nil) or fn returns an error.
type StateWatcher interface {
	Watch(ctx context.Context, id string, fn func(d *council.Deliberation, revision uint64) error) error
}

// TokenFeed reads a deliberation's token stream back (natsjs.TokenFeed).
// Follow calls fn with each message stored after stream sequence after, in
// order, then those stored later, until ctx ends (nil) or fn returns an
// error; Last is the sequence of its last message (0: none).
type TokenFeed interface {
	Follow(ctx context.Context, id string, after uint64, fn func(c council.TokenChunk, seq uint64) error) error
	Last(ctx context.Context, id string) (uint64, error)
}

type liveSource struct {
	states    StateWatcher
	tokens    TokenFeed
	keepalive time.Duration
}

// WithLive serves GET /deliberations/{id}/events from states (the
// deliberation's stored state) and tokens (its token stream). Without it,
// the route answers 501.
func WithLive(states StateWatcher, tokens TokenFeed) Option {
	return func(f *Function) error {
		if states == nil || tokens == nil {
			return errors.New("WithLive: a StateWatcher and a TokenFeed are required")
		}
		f.live = &liveSource{states: states, tokens: tokens, keepalive: 15 * time.Second}
		return nil
	}
}

// cursor is where a client of the event stream is: the last state
// revision and token stream sequence it was sent, and whether it was sent
// the end. It is the id of every event ("<revision>-<sequence>", "-end"
// appended on the terminal event), so that a client reconnecting with
// Last-Event-ID resumes both exactly: nothing missed, nothing repeated.
type cursor struct {
	rev, tok uint64
	end      bool
}

func (c cursor) String() string {
	s := strconv.FormatUint(c.rev, 10) + "-" + strconv.FormatUint(c.tok, 10)
	if c.end {
		s += "-end"
	}
	return s
}

// parseCursor reads a Last-Event-ID ("" is the start).
func parseCursor(s string) (cursor, error) {
	var c cursor
	if s == "" {
		return c, nil
	}
	parts := strings.Split(s, "-")
	if len(parts) == 3 && parts[2] == "end" {
		c.end, parts = true, parts[:2]
	}
	if len(parts) != 2 {
		return c, council.Invalidf("Last-Event-ID %q: want <revision>-<sequence> as this route sent it", s)
	}
	var err1, err2 error
	c.rev, err1 = strconv.ParseUint(parts[0], 10, 64)
	c.tok, err2 = strconv.ParseUint(parts[1], 10, 64)
	if err1 != nil || err2 != nil {
		return c, council.Invalidf("Last-Event-ID %q: want <revision>-<sequence> as this route sent it", s)
	}
	return c, nil
}

// liveItem is what the watchers hand the writer: a state version, a token
// message, or the error that ended a watcher.
type liveItem struct {
	d   *council.Deliberation
	rev uint64
	tok *council.TokenChunk
	seq uint64
	err error
}

// serveEvents answers GET /deliberations/{id}/events: Server-Sent Events
// of the deliberation's progress (a progress event per stored revision)
// and its agents' tokens (a token event per token message), ending with
// the terminal event (completed or failed) once the deliberation ended and
// every token stored before its end was sent. Resumable with Last-Event-ID
// (the header, or the last_event_id query parameter); a client that was
// sent the terminal event gets 204, which tells an EventSource to stop.
func (f *Function) serveEvents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if f.live == nil {
		writeJSON(w, http.StatusNotImplemented, events.ErrorReply{Error: "this execute has no live source (natsjs state bucket and token stream)"})
		return
	}
	last := r.Header.Get("Last-Event-ID")
	if last == "" {
		last = r.URL.Query().Get("last_event_id")
	}
	cur, err := parseCursor(last)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, events.ErrorReply{Error: err.Error()})
		return
	}
	if _, _, err := f.store.Get(r.Context(), id); err != nil {
		serveNoDeliberationID(w, id, err)
		return
	}
	if cur.end {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	rc := http.NewResponseController(w)
	// The stream lasts as long as the deliberation, past the server's
	// write timeout (sized for one event).
	_ = rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	_ = rc.Flush()
	if err := f.streamLive(r.Context(), id, cur, &sseWriter{w: w, rc: rc}); err != nil {
		f.log.Info("event stream ended", "deliberation", id, "error", err)
	}
}

// streamLive writes the events of deliberation id after cur to out until
// the terminal event, ctx's end or a failed write.
func (f *Function) streamLive(ctx context.Context, id string, cur cursor, out *sseWriter) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	items := make(chan liveItem, 64)
	send := func(it liveItem) error {
		select {
		case items <- it:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	go func() {
		err := f.live.states.Watch(ctx, id, func(d *council.Deliberation, rev uint64) error {
			return send(liveItem{d: d, rev: rev})
		})
		_ = send(liveItem{err: fmt.Errorf("state watch: %w", errOr(err, "ended"))})
	}()
	go func() {
		err := f.live.tokens.Follow(ctx, id, cur.tok, func(c council.TokenChunk, seq uint64) error {
			return send(liveItem{tok: &c, seq: seq})
		})
		_ = send(liveItem{err: fmt.Errorf("token feed: %w", errOr(err, "ended"))})
	}()
	keepalive := time.NewTicker(f.live.keepalive)
	defer keepalive.Stop()
	var (
		ended  *council.Deliberation // the terminal version, once seen
		target uint64                // the last token stored before the end
	)
	for {
		if ended != nil && cur.tok >= target {
			cur.end = true
			env := events.NewCompleted(f.source, ended, f.now())
			name := events.LiveCompleted
			if ended.Status != council.StatusCompleted {
				env, name = events.NewFailed(f.source, ended, f.now()), events.LiveFailed
			}
			return out.event(cur, name, env.Data)
		}
		var it liveItem
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-keepalive.C:
			if err := out.comment("keepalive"); err != nil {
				return err
			}
			continue
		case it = <-items:
		}
		switch {
		case it.err != nil:
			return it.err
		case it.tok != nil:
			if it.seq <= cur.tok {
				continue
			}
			cur.tok = it.seq
			b, err := events.EncodeLive(events.TokenMessageOf(*it.tok))
			if err != nil {
				return err
			}
			if err := out.event(cur, events.LiveToken, b); err != nil {
				return err
			}
		case it.d != nil:
			if it.rev > cur.rev {
				cur.rev = it.rev
				b, err := events.EncodeLive(events.NewLiveState(it.d, it.rev, f.view(it.d, f.now())))
				if err != nil {
					return err
				}
				if err := out.event(cur, events.LiveProgress, b); err != nil {
					return err
				}
			}
			if it.d.Status.Terminal() && ended == nil {
				// Its tokens were stored before the results that ended
				// it: send them up to the last one there is now.
				last, err := f.live.tokens.Last(ctx, id)
				if err != nil {
					return err
				}
				ended, target = it.d, last
			}
		}
	}
}

// serveNoDeliberationID answers a failed read of deliberation id: 404 for
// an id no deliberation has, else the query error.
func serveNoDeliberationID(w http.ResponseWriter, id string, err error) {
	if errors.Is(err, council.ErrNotFound) || errors.Is(err, council.ErrInvalid) {
		writeJSON(w, http.StatusNotFound, Deliberation{DeliberationID: id, Status: StatusNotFound})
		return
	}
	writeQueryError(w, err)
}

func errOr(err error, what string) error {
	if err != nil {
		return err
	}
	return errors.New(what)
}

// sseWriter writes Server-Sent Events, each flushed at once.
type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (s *sseWriter) event(c cursor, name string, data []byte) error {
	// JSON data holds no raw newline: one data line.
	if _, err := fmt.Fprintf(s.w, "id: %s\nevent: %s\ndata: %s\n\n", c, name, data); err != nil {
		return err
	}
	return s.rc.Flush()
}

func (s *sseWriter) comment(text string) error {
	if _, err := fmt.Fprintf(s.w, ": %s\n\n", text); err != nil {
		return err
	}
	return s.rc.Flush()
}
