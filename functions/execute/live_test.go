package execute_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"council.dev/events"
	"council.dev/events/eventstest"
	"council.dev/functions/execute"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// fakeLive stands for the state bucket and the token stream (the ports
// execute.StateWatcher and execute.TokenFeed): the versions and tokens it
// holds come at once, then nothing until the context ends.
type fakeLive struct {
	versions []*council.Deliberation // revision i+1
	tokens   []council.TokenChunk    // stream sequence i+1
}

func (l *fakeLive) Watch(ctx context.Context, id string, fn func(*council.Deliberation, uint64) error) error {
	// A watch sees the current version first, then what comes later:
	// here, every version, as if it connected at the start.
	for i, d := range l.versions {
		if err := fn(d, uint64(i+1)); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return nil
}

func (l *fakeLive) Follow(ctx context.Context, id string, after uint64, fn func(council.TokenChunk, uint64) error) error {
	for i, c := range l.tokens {
		if uint64(i+1) <= after {
			continue
		}
		if err := fn(c, uint64(i+1)); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return nil
}

func (l *fakeLive) Last(context.Context, string) (uint64, error) { return uint64(len(l.tokens)), nil }

type sseEvent struct{ id, name, data string }

// stream reads the events of GET path from h until the handler ends.
func stream(t *testing.T, h http.Handler, path, last string) (*httptest.ResponseRecorder, []sseEvent) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, path, nil)
	if last != "" {
		req.Header.Set("Last-Event-ID", last)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if ctx.Err() != nil {
		t.Fatalf("GET %s did not end", path)
	}
	var (
		out []sseEvent
		cur sseEvent
	)
	sc := bufio.NewScanner(strings.NewReader(rec.Body.String()))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "" && cur.name != "":
			out = append(out, cur)
			cur = sseEvent{}
		case strings.HasPrefix(line, "id: "):
			cur.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.data = strings.TrimPrefix(line, "data: ")
		}
	}
	return rec, out
}

func liveDeliberation(t *testing.T) (*fakeLive, *council.Deliberation) {
	t.Helper()
	d, err := council.New("dlb-live", counciltest.Task(), t0)
	if err != nil {
		t.Fatal(err)
	}
	running := d.Clone()
	if err := counciltest.Finish(d, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	tok := func(agent string, seq int, text string, final bool) council.TokenChunk {
		return council.TokenChunk{DeliberationID: d.ID, AgentID: agent, Attempt: 1, Seq: seq, Text: text, Final: final}
	}
	return &fakeLive{
		versions: []*council.Deliberation{running, d},
		tokens:   []council.TokenChunk{tok("a", 1, "Hel", false), tok("a", 2, "lo", false), tok("a", 3, "", true)},
	}, d
}

func newLive(t *testing.T, live *fakeLive, d *council.Deliberation) http.Handler {
	t.Helper()
	store := counciltest.NewStore()
	if _, err := store.Create(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	f, err := execute.New(store, &counciltest.Emitter{}, execute.WithLive(live, live), execute.WithClock(func() time.Time { return t0.Add(time.Hour) }))
	if err != nil {
		t.Fatal(err)
	}
	return f.QueryHandler()
}

func TestEventStreamToTheEnd(t *testing.T) {
	live, d := liveDeliberation(t)
	h := newLive(t, live, d)
	rec, got := stream(t, h, "/deliberations/dlb-live/events", "")
	if ct := rec.Header().Get("Content-Type"); rec.Code != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("GET = %d %s, want 200 text/event-stream", rec.Code, ct)
	}
	var names, ids []string
	for _, e := range got {
		names, ids = append(names, e.name), append(ids, e.id)
	}
	// The tokens and the states interleave as they come; the end comes
	// last, after every token.
	if n := len(got); n != 6 || got[n-1].name != events.LiveCompleted || got[n-1].id != "2-3-end" {
		t.Fatalf("events %v (ids %v): want 2 progress, 3 token, then completed with id 2-3-end", names, ids)
	}
	counts := map[string]int{}
	for _, e := range got {
		counts[e.name]++
	}
	if counts[events.LiveProgress] != 2 || counts[events.LiveToken] != 3 {
		t.Errorf("events %v: want 2 progress and 3 token", names)
	}
	var done events.Completed
	if err := json.Unmarshal([]byte(got[5].data), &done); err != nil || done.Status != "completed" || len(done.Ranking) == 0 {
		t.Errorf("terminal data %s (%v): want the deliberation.completed data", got[5].data, err)
	}

	// Each progress event's data is what openapi.yaml documents.
	_, c := eventstest.OpenAPI(t)
	schema, err := c.Compile(eventstest.OpenAPIURL + "#/components/schemas/LiveState")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range got {
		if e.name != events.LiveProgress {
			continue
		}
		inst, err := jsonschema.UnmarshalJSON(strings.NewReader(e.data))
		if err != nil {
			t.Fatal(err)
		}
		if err := schema.Validate(inst); err != nil {
			t.Errorf("progress event %s breaks openapi.yaml: %v", e.id, err)
		}
		var st events.LiveState
		if err := json.Unmarshal([]byte(e.data), &st); err != nil {
			t.Fatal(err)
		}
		if st.Deliberation.DeliberationID != d.ID || len(st.Calls) == 0 || len(st.Agents) != len(d.Task.Agents) {
			t.Errorf("progress event %s: %d calls, %d agents", e.id, len(st.Calls), len(st.Agents))
		}
	}
}

func TestEventStreamResumes(t *testing.T) {
	live, d := liveDeliberation(t)
	h := newLive(t, live, d)
	_, got := stream(t, h, "/deliberations/dlb-live/events", "1-2")
	var seen []string
	for _, e := range got {
		seen = append(seen, e.name+" "+e.id)
	}
	// After revision 1 and token 2: revision 2, token 3, the end.
	want := map[string]bool{"progress 2-2": true, "progress 2-3": true, "token 1-3": true, "token 2-3": true}
	if len(got) != 3 || got[2].name != events.LiveCompleted || !want[seen[0]] || !want[seen[1]] {
		t.Errorf("resumed after 1-2: %v; want revision 2 and token 3 (in either order), then completed", seen)
	}
	if rec, _ := stream(t, h, "/deliberations/dlb-live/events", "2-3-end"); rec.Code != http.StatusNoContent {
		t.Errorf("after the end: %d, want 204", rec.Code)
	}
}

func TestEventStreamErrorsAnswerWhatOpenAPISays(t *testing.T) {
	api := loadOpenAPI(t)
	live, d := liveDeliberation(t)
	h := newLive(t, live, d)
	store := counciltest.NewStore()
	seed(t, store, "dlb-live", council.BackendFunctions, council.StatusRunning, t0, 0)
	bare, err := execute.New(store, &counciltest.Emitter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, last string
		h                http.Handler
		want             int
	}{
		{"unknown", "/deliberations/dlb-nope/events", "", h, http.StatusNotFound},
		{"bad Last-Event-ID", "/deliberations/dlb-live/events", "x-1", h, http.StatusBadRequest},
		{"Last-Event-ID of three numbers", "/deliberations/dlb-live/events", "1-2-3", h, http.StatusBadRequest},
		{"no live source", "/deliberations/dlb-live/events", "", bare.QueryHandler(), http.StatusNotImplemented},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, _ := stream(t, tc.h, tc.path, tc.last)
			if rec.Code != tc.want {
				t.Errorf("GET %s = %d, want %d: %s", tc.path, rec.Code, tc.want, rec.Body)
			}
			api.check(t, "/deliberations/{id}/events", rec)
		})
	}
}

func TestViewPage(t *testing.T) {
	live, d := liveDeliberation(t)
	h := newLive(t, live, d)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/deliberations/dlb-live/view", nil))
	body := rec.Body.String()
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET view = %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
	for _, want := range []string{`new EventSource(base + "/events")`, `id="ranking"`, `id="matrix"`, `id="timeline"`, `id="agreement"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the page has no %s", want)
		}
	}
	if strings.Contains(body, "<script src") || strings.Contains(body, "<link") {
		t.Error("the page loads something: it must be self-contained")
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/deliberations/dlb-nope/view", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("view of an unknown id = %d, want 404", rec.Code)
	}
	loadOpenAPI(t).check(t, "/deliberations/{id}/view", rec)
}
