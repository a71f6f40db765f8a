package test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"council.dev/events"
	"council.dev/shared/counciltest"
)

// sse is one Server-Sent Event as a plain HTTP client reads it.
type sse struct {
	ID, Name, Data string
}

// readSSE reads the events of GET url (with Last-Event-ID last, if any)
// until the server ends the stream or stop returns true for an event (then
// it hangs up). It returns the status and the events read.
func readSSE(t *testing.T, url, last string, stop func(sse) bool) (int, []sse) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if last != "" {
		req.Header.Set("Last-Event-ID", last)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q, want text/event-stream", ct)
	}
	var (
		out []sse
		cur sse
	)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.Name == "" && cur.Data == "" {
				continue // a comment (keepalive) ends here
			}
			out = append(out, cur)
			if stop != nil && stop(cur) {
				return resp.StatusCode, out
			}
			cur = sse{}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "id: "):
			cur.ID = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			cur.Name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.Data += strings.TrimPrefix(line, "data: ")
		default:
			t.Errorf("unexpected line in the event stream: %q", line)
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("read %s: %v", url, err)
	}
	return resp.StatusCode, out
}

// eventCursor splits an event id "<revision>-<sequence>[-end]".
func eventCursor(t *testing.T, id string) (rev, tok uint64) {
	t.Helper()
	parts := strings.Split(id, "-")
	if len(parts) < 2 {
		t.Fatalf("event id %q: want <revision>-<sequence>", id)
	}
	r, err1 := strconv.ParseUint(parts[0], 10, 64)
	s, err2 := strconv.ParseUint(parts[1], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("event id %q: want <revision>-<sequence>", id)
	}
	return r, s
}

// accepted waits until execute stored deliberation id (before, its routes
// answer 404).
func accepted(t *testing.T, base, id string) {
	t.Helper()
	ok := counciltest.Within(time.Minute, 20*time.Millisecond, func() bool {
		resp, err := http.Get(base + "/deliberations/" + id)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if !ok {
		t.Fatalf("deliberation %s not stored within a minute", id)
	}
}

// TestEventStreamOfADeliberation follows a deliberation over HTTP (real
// NATS, the real LLM server): a plain client reads part of the stream,
// hangs up, reconnects with Last-Event-ID and reads the rest to the
// terminal event. Together the two parts hold every token message once,
// in order, as a client that reads the whole stream after the end gets
// them, and the terminal event is the result the Orchestrator gets.
func TestEventStreamOfADeliberation(t *testing.T) {
	s := startStack(t, false)
	srv := httptest.NewServer(s.Execute().QueryHandler())
	t.Cleanup(srv.Close)
	id := send(t, s, request(t, 48))
	url := srv.URL + "/deliberations/" + id + "/events"
	accepted(t, srv.URL, id)

	// Part one: until the third token message, then hang up.
	tokens := 0
	_, first := readSSE(t, url, "", func(e sse) bool {
		if e.Name == events.LiveToken {
			tokens++
		}
		return tokens == 3
	})
	if len(first) == 0 || first[0].Name != events.LiveProgress {
		t.Fatalf("first part %v: want a progress event first", first)
	}
	last := first[len(first)-1].ID
	// Part two: resume there, to the end.
	status, second := readSSE(t, url, last, nil)
	if status != http.StatusOK {
		t.Fatalf("reconnect with Last-Event-ID %s: status %d", last, status)
	}
	if len(second) == 0 {
		t.Fatal("the reconnected stream is empty")
	}
	end := second[len(second)-1]
	if end.Name != events.LiveCompleted || !strings.HasSuffix(end.ID, "-end") {
		t.Fatalf("the stream ended with %s (id %s), want completed with an -end id", end.Name, end.ID)
	}
	var done events.Completed
	if err := json.Unmarshal([]byte(end.Data), &done); err != nil {
		t.Fatal(err)
	}
	want := await(t, s, id)
	checkCompleted(t, &done, "task-42")
	if done.Winner != want.Winner || len(done.Ranking) != len(want.Ranking) {
		t.Errorf("terminal event: winner %s of %d, want %s of %d", done.Winner, len(done.Ranking), want.Winner, len(want.Ranking))
	}

	// Ids only go forward across the reconnect: nothing is repeated.
	both := append(append([]sse{}, first...), second...)
	var prevRev, prevTok uint64
	for i, e := range both {
		rev, tok := eventCursor(t, e.ID)
		if rev < prevRev || tok < prevTok || (i > 0 && e.ID == both[i-1].ID) {
			t.Errorf("event %d (%s %s) after %d-%d: ids must go forward", i, e.Name, e.ID, prevRev, prevTok)
		}
		if e.Name == events.LiveProgress {
			var st events.LiveState
			if err := json.Unmarshal([]byte(e.Data), &st); err != nil || st.Revision != rev {
				t.Errorf("progress event %s: revision %d, %v", e.ID, st.Revision, err)
			}
		}
		prevRev, prevTok = rev, tok
	}

	// Nothing is missed: the token messages of the two parts are those of
	// the whole stream read again from the start, now that it ended.
	_, whole := readSSE(t, url, "", nil)
	pick := func(es []sse) []string {
		var out []string
		for _, e := range es {
			if e.Name == events.LiveToken {
				out = append(out, e.ID[strings.IndexByte(e.ID, '-')+1:]+" "+e.Data)
			}
		}
		return out
	}
	got, all := pick(both), pick(whole)
	if len(all) == 0 {
		t.Fatal("no token event in the whole stream")
	}
	if strings.Join(got, "\n") != strings.Join(all, "\n") {
		t.Errorf("token events across the reconnect (%d) differ from the whole stream's (%d)", len(got), len(all))
	}
	if w := whole[len(whole)-1]; w.Name != events.LiveCompleted {
		t.Errorf("the replayed stream ended with %s, want completed", w.Name)
	}

	// Every token message carries its attempt; the text of the attempt
	// that answered is the proposal.
	text := map[string]string{}
	for _, e := range whole {
		if e.Name != events.LiveToken {
			continue
		}
		var m events.TokenMessage
		if err := json.Unmarshal([]byte(e.Data), &m); err != nil {
			t.Fatal(err)
		}
		if m.Attempt < 1 || m.DeliberationID != id {
			t.Errorf("token message %+v: want attempt >= 1 and deliberation %s", m, id)
		}
		text[fmt.Sprintf("%s/%d/%d", m.AgentID, m.Stage, m.Attempt)] += m.Text
	}
	for _, r := range done.Ranking {
		p := r.Proposal
		got := text[fmt.Sprintf("%s/%d/%d", p.AgentID, p.Stage, p.Attempt)]
		if strings.TrimSpace(got) != strings.TrimSpace(p.Content) {
			t.Errorf("tokens of %s stage %d attempt %d: %d bytes, the proposal has %d", p.AgentID, p.Stage, p.Attempt, len(got), len(p.Content))
		}
	}

	// The end was sent: a client reconnecting after it is told to stop.
	if status, _ := readSSE(t, url, end.ID, nil); status != http.StatusNoContent {
		t.Errorf("reconnect after the end: status %d, want 204", status)
	}
}
