package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"council.dev/cli/stack"
	"council.dev/events"
	"council.dev/events/eventstest"
	"council.dev/functions/generate"
	"council.dev/shared/counciltest"
	"council.dev/shared/host"
)

// result is what one run of the CLI wrote and returned.
type result struct {
	code        int
	stdout, err string
}

// runCLI runs the CLI with args, stdin and an empty environment.
func runCLI(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(t.Context(), args, strings.NewReader(stdin), &out, &errb, func(string) string { return "" })
	return result{code: code, stdout: out.String(), err: errb.String()}
}

func (r result) must(t *testing.T, code int) result {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.err)
	}
	return r
}

func TestUsage(t *testing.T) {
	r := runCLI(t, "").must(t, 2)
	if !strings.Contains(r.err, "Usage:") {
		t.Errorf("no args: stderr %q lacks the usage", r.err)
	}
	r = runCLI(t, "", "frobnicate").must(t, 2)
	if !strings.Contains(r.err, `unknown command "frobnicate"`) || !strings.Contains(r.err, "council send") {
		t.Errorf("unknown command: stderr %q", r.err)
	}
	r = runCLI(t, "", "help").must(t, 0)
	for _, c := range []string{"dev", "send", "watch", "status", "find", "jobs", "stats", "fixtures"} {
		if !strings.Contains(r.stdout, "council "+c) {
			t.Errorf("help lacks %q:\n%s", c, r.stdout)
		}
	}
	for _, c := range []string{"send", "watch", "status", "find", "jobs", "stats", "dev"} {
		r := runCLI(t, "", c, "-h").must(t, 0)
		if !strings.Contains(r.err, "-timeout") {
			t.Errorf("%s -h: stderr lacks the flags:\n%s", c, r.err)
		}
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"send"}, "want one FIXTURE"},
		{[]string{"send", "x.json"}, "want exactly one of -to URL (HTTP) and -nats URL"},
		{[]string{"send", "x.json", "-to", "http://a", "-nats", "nats://b"}, "want exactly one of"},
		{[]string{"send", "x.json", "-to", "http://a", "-mode", "carrier-pigeon"}, `-mode "carrier-pigeon"`},
		{[]string{"send", "-bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"watch"}, "-nats URL is required"},
		{[]string{"watch", "-nats", "nats://a", "-deliberation", "task-1"}, "starts with dlb-"},
		{[]string{"watch", "-nats", "nats://a", "-since", "yesterday"}, `-since "yesterday"`},
		{[]string{"status", "-execute", "http://a"}, "want one DELIBERATION_ID"},
		{[]string{"jobs"}, "-execute URL is required"},
		{[]string{"stats", "-execute", "ftp://a"}, "want an http(s) URL"},
	} {
		r := runCLI(t, "", tt.args...).must(t, 2)
		if !strings.Contains(r.err, tt.want) {
			t.Errorf("%q: stderr %q lacks %q", tt.args, r.err, tt.want)
		}
	}
}

func TestFixturesListsEveryFixture(t *testing.T) {
	r := runCLI(t, "", "fixtures").must(t, 0)
	for _, want := range []string{"deliberation.requested.v1/valid/minimal.json", "proposal.requested.v1/invalid/unknown_field.json"} {
		if !strings.Contains(r.stdout, want+"\n") {
			t.Errorf("fixtures lacks %s", want)
		}
	}
}

// recorder serves h through the real HTTP host and records the content
// type of every request it receives.
type recorder struct {
	URL   string
	mu    sync.Mutex
	types []string
}

func serveFunction(t *testing.T, h host.Handler) *recorder {
	t.Helper()
	srv, err := host.NewHTTPServer("127.0.0.1:0", h)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.types = append(rec.types, r.Header.Get("Content-Type")+" ce-id="+r.Header.Get("Ce-Id"))
		rec.mu.Unlock()
		srv.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	rec.URL = ts.URL
	return rec
}

func (r *recorder) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.types...)
}

func newGenerate(t *testing.T) *generate.Function {
	t.Helper()
	fn, err := generate.New(&counciltest.Completer{})
	if err != nil {
		t.Fatal(err)
	}
	return fn
}

// TestSendRejectsInvalidFixturesBeforeSending sends every invalid fixture:
// each is refused with the codec's message and never reaches the function.
func TestSendRejectsInvalidFixturesBeforeSending(t *testing.T) {
	fn := serveFunction(t, newGenerate(t).Handle)
	for _, dir := range []string{"deliberation.requested.v1/invalid", "proposal.requested.v1/invalid", "critique.completed.v1/invalid"} {
		for _, c := range eventstest.Cases(t, dir) {
			t.Run(dir+"/"+c.Name, func(t *testing.T) {
				r := runCLI(t, "", "send", dir+"/"+c.Name+".json", "-to", fn.URL).must(t, 1)
				if !strings.Contains(r.err, "not sent") {
					t.Errorf("stderr %q does not say the event was not sent", r.err)
				}
				// The CLI decodes an event by its own type; a fixture of
				// another type in this directory fails another decoder.
				if strings.HasPrefix(c.Event.Type(), events.Prefix+strings.TrimSuffix(dir, "/invalid")) && !strings.Contains(r.err, c.Expect) {
					t.Errorf("stderr %q lacks the codec's message %q", r.err, c.Expect)
				}
			})
		}
	}
	if got := fn.requests(); len(got) != 0 {
		t.Errorf("the function received %d requests, want none: %q", len(got), got)
	}
}

func TestSendUnknownFixture(t *testing.T) {
	r := runCLI(t, "", "send", "nope.v1/valid/x.json", "-to", "http://127.0.0.1:1").must(t, 1)
	if !strings.Contains(r.err, "not in the events fixtures") {
		t.Errorf("stderr %q", r.err)
	}
	r = runCLI(t, "{not json", "send", "-", "-to", "http://127.0.0.1:1").must(t, 1)
	if !strings.Contains(r.err, "stdin: invalid: not a structured CloudEvent") {
		t.Errorf("stderr %q", r.err)
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func TestUnreachableEndpointsAreNamed(t *testing.T) {
	addr := closedAddr(t)
	fixture := "deliberation.requested.v1/valid/minimal.json"
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"send", fixture, "-to", "http://" + addr + "/council/council"},
			[]string{"cannot reach HTTP endpoint at http://" + addr + "/council/council", "start the function", "port-forward"}},
		{[]string{"send", fixture, "-nats", "nats://" + addr},
			[]string{"cannot reach NATS at nats://" + addr, "nats-server -js"}},
		{[]string{"watch", "-nats", "nats://" + addr},
			[]string{"cannot reach NATS at nats://" + addr}},
		{[]string{"status", "dlb-0", "-execute", "http://" + addr},
			[]string{"cannot reach execute at http://" + addr, "go run ./functions/execute/cmd/execute"}},
		{[]string{"jobs", "-execute", "http://" + addr}, []string{"cannot reach execute at http://" + addr}},
		{[]string{"stats", "-execute", "http://" + addr}, []string{"cannot reach execute at http://" + addr}},
	} {
		r := runCLI(t, "", tt.args...).must(t, 1)
		for _, w := range tt.want {
			if !strings.Contains(r.err, w) {
				t.Errorf("%q: stderr %q lacks %q", tt.args, r.err, w)
			}
		}
	}
}

// replyOf decodes the reply event printed after the "HTTP 200 OK" line.
func replyOf(t *testing.T, stdout string) event.Event {
	t.Helper()
	_, body, ok := strings.Cut(stdout, "HTTP 200 OK\n")
	if !ok {
		t.Fatalf("no HTTP 200 OK in:\n%s", stdout)
	}
	var e event.Event
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("reply is not a CloudEvent: %v\n%s", err, body)
	}
	return e
}

// TestSendToTheGenerateFunction sends a proposal request to the real
// generate function served by the real HTTP host, in both content modes and
// from stdin, and reads its reply.
func TestSendToTheGenerateFunction(t *testing.T) {
	fn := serveFunction(t, newGenerate(t).Handle)
	const fixture = "proposal.requested.v1/valid/stage0.json"
	raw, err := fs.ReadFile(events.Fixtures(), fixture)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, stdin string
		args        []string
		contentType string
	}{
		{"binary", "", []string{"send", fixture, "-to", fn.URL}, "application/json ce-id=cli-"},
		{"structured", "", []string{"send", "-mode", "structured", fixture, "-to", fn.URL}, "application/cloudevents+json ce-id="},
		{"stdin keep id", string(raw), []string{"send", "-", "-to", fn.URL, "-keep-id"}, "application/json ce-id=dlb-4f1c2a9e0b7d6c5a3e2f1d0c.p.0.dev-1.1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := len(fn.requests())
			r := runCLI(t, tt.stdin, tt.args...).must(t, 0)
			reply := replyOf(t, r.stdout)
			if reply.Type() != events.TypeProposalGenerated {
				t.Fatalf("reply type %s, want %s", reply.Type(), events.TypeProposalGenerated)
			}
			_, key, p, err := events.DecodeProposalGenerated(reply)
			if err != nil || key != "p.0.dev-1" || p.AgentID != "dev-1" || p.Content == "" {
				t.Errorf("reply: key %q, proposal %+v, err %v", key, p, err)
			}
			got := fn.requests()
			if len(got) != before+1 || !strings.HasPrefix(got[before], tt.contentType) {
				t.Errorf("the function received %q, want one request of %q", got[before:], tt.contentType)
			}
		})
	}

	t.Run("no-validate shows the function's rejection", func(t *testing.T) {
		r := runCLI(t, "", "send", "-no-validate", "proposal.requested.v1/invalid/unknown_field.json", "-to", fn.URL).must(t, 1)
		if !strings.Contains(r.stdout, "HTTP 400 Bad Request") || !strings.Contains(r.stdout, "unknown field") {
			t.Errorf("stdout %q lacks the 400 and the function's message", r.stdout)
		}
		if !strings.Contains(r.err, "permanent") {
			t.Errorf("stderr %q does not say the failure is permanent", r.err)
		}
	})
}

// TestFullDeliberationOverJetStream drives a whole 3-agent deliberation on
// the real local stack (embedded NATS JetStream, the three functions on
// the JetStream transport, a fake LLM): send -nats starts it, watch
// -until-done follows it to the end, and the query commands read the real
// execute function's answers.
func TestFullDeliberationOverJetStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	s, err := stack.Start(ctx, stack.Config{Completer: &counciltest.Completer{}, StoreDir: t.TempDir(), SweepEvery: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)

	const fixture = "deliberation.requested.v1/valid/deliberation.json"
	r := runCLI(t, "", "send", fixture, "-nats", s.URL).must(t, 0)
	id := regexp.MustCompile(`deliberation (dlb-[0-9a-f]+)`).FindStringSubmatch(r.stdout)
	if id == nil || !strings.Contains(r.stdout, "stream COUNCIL_EVENTS seq ") {
		t.Fatalf("send printed no deliberation id or sequence:\n%s", r.stdout)
	}

	w := runCLI(t, "", "watch", "-nats", s.URL, "-deliberation", id[1], "-tokens", "-until-done", "-timeout", "2m").must(t, 0)
	for _, want := range []string{
		"deliberation.requested.v1",
		"deliberation.accepted.v1",
		"proposal.generated.v1",
		"critique.completed.v1",
		"progress",
		"generated 3/3 · critiqued 3/3 · revised 3/3 · reviewed 6/6",
		"deliberation.completed.v1  " + id[1] + "  winner ",
		"dev-1 s0 │ proposal:", // a token line of the fake model
		"RANK",
	} {
		if !strings.Contains(w.stdout, want) {
			t.Errorf("watch output lacks %q:\n%s", want, w.stdout)
		}
	}
	if strings.Index(w.stdout, "revised 3/3") > strings.Index(w.stdout, "deliberation.completed.v1") {
		t.Errorf("progress reached revised 3/3 only after the completed event:\n%s", w.stdout)
	}

	// A second send of the same fixture gets a fresh id: a new deliberation.
	r2 := runCLI(t, "", "send", fixture, "-nats", s.URL).must(t, 0)
	if strings.Contains(r2.stdout, id[1]) {
		t.Errorf("a re-send reused deliberation %s:\n%s", id[1], r2.stdout)
	}
	// With -keep-id the broker drops the second copy as a duplicate.
	runCLI(t, "", "send", fixture, "-nats", s.URL, "-keep-id").must(t, 0)
	dup := runCLI(t, "", "send", fixture, "-nats", s.URL, "-keep-id").must(t, 0)
	if !strings.Contains(dup.stdout, "duplicate") {
		t.Errorf("a re-send with -keep-id was not dropped as a duplicate:\n%s", dup.stdout)
	}

	exec := httptest.NewServer(s.Execute().QueryHandler())
	t.Cleanup(exec.Close)
	st := runCLI(t, "", "status", id[1], "-execute", exec.URL).must(t, 0)
	for _, want := range []string{"status        completed", "task          task-42", "RANK", "winner: "} {
		if !strings.Contains(st.stdout, want) {
			t.Errorf("status output lacks %q:\n%s", want, st.stdout)
		}
	}
	runCLI(t, "", "status", "dlb-000000000000000000000000", "-execute", exec.URL).must(t, 1)
	page := runCLI(t, "", "view", id[1], "-execute", exec.URL).must(t, 0)
	if want := exec.URL + "/deliberations/" + id[1] + "/view\tcompleted"; !strings.Contains(page.stdout, want) {
		t.Errorf("view prints %q, want %q", page.stdout, want)
	}
	runCLI(t, "", "view", "dlb-000000000000000000000000", "-execute", exec.URL).must(t, 1)
	found := runCLI(t, "", "find", "task-42", "-execute", exec.URL).must(t, 0)
	if !strings.Contains(found.stdout, id[1]) || !strings.Contains(found.stdout, "completed") {
		t.Errorf("find task-42 does not list deliberation %s, completed:\n%s", id[1], found.stdout)
	}
	if none := runCLI(t, "", "find", "task-none", "-execute", exec.URL).must(t, 0); !strings.Contains(none.stdout, "no deliberations of task task-none") {
		t.Errorf("find of a task without deliberations:\n%s", none.stdout)
	}
	jobs := runCLI(t, "", "jobs", "-execute", exec.URL).must(t, 0)
	if !strings.Contains(jobs.stdout, "DELIBERATION") && !strings.Contains(jobs.stdout, "no running deliberations") {
		t.Errorf("jobs output:\n%s", jobs.stdout)
	}
	stats := runCLI(t, "", "stats", "-execute", exec.URL).must(t, 0)
	for _, want := range []string{": healthy, up ", "nats   yes", "completed"} {
		if !strings.Contains(stats.stdout, want) {
			t.Errorf("stats output lacks %q:\n%s", want, stats.stdout)
		}
	}
	if err := s.Err(); err != nil {
		t.Errorf("stack: %v", err)
	}
}

// TestQueryFormatting checks only how the query commands print answers
// they cannot easily get from a real execute (a Ray job, an unhealthy
// service): the JSON is canned.
func TestQueryFormatting(t *testing.T) {
	var hits atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/jobs":
			_, _ = w.Write([]byte(`[{"deliberation_id":"dlb-aa","task_id":"task-42","role":"DEV","backend":"ray","status":"running",
				"started_at":"2025-11-28T10:00:00Z","runtime":"1m 5s","job":{"submission_id":"raysubmit_1","state":"RUNNING"}}]`))
		case "/status":
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"status":"unhealthy","uptime_seconds":65,"checks":{"nats":{"ok":true,"latency_ms":1},
				"llm":{"ok":false,"error":"connection refused","latency_ms":3}},
				"stats":{"total":4,"active":1,"completed":2,"failed":1,"average_ms":1500,"p50_ms":1200,"p95_ms":2500}}`))
		case "/deliberations/dlb-aa":
			_, _ = w.Write([]byte(`{"deliberation_id":"dlb-aa","task_id":"task-42","status":"running","backend":"ray",
				"started_at":"2025-11-28T10:00:00Z","duration_ms":65000,"job":{"submission_id":"raysubmit_1","state":"RUNNING","attempt":1}}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer ts.Close()

	j := runCLI(t, "", "jobs", "-execute", ts.URL).must(t, 0)
	if !regexp.MustCompile(`dlb-aa\s+task-42\s+DEV\s+ray\s+running\s+2025-11-28T10:00:00Z\s+1m 5s\s+raysubmit_1 RUNNING`).MatchString(j.stdout) {
		t.Errorf("jobs table:\n%s", j.stdout)
	}
	s := runCLI(t, "", "stats", "-execute", ts.URL).must(t, 1)
	for _, want := range []string{"unhealthy, up 1m5s", "llm    NO   3ms", "4 total · 1 active · 2 completed · 1 failed", "p95 2.5s"} {
		if !strings.Contains(s.stdout, want) {
			t.Errorf("stats output lacks %q:\n%s", want, s.stdout)
		}
	}
	if !strings.Contains(s.err, "is unhealthy: llm: connection refused") {
		t.Errorf("stats stderr %q", s.err)
	}
	d := runCLI(t, "", "status", "dlb-aa", "-execute", ts.URL).must(t, 0)
	if !strings.Contains(d.stdout, "ray job       raysubmit_1 RUNNING (attempt 1)") || !strings.Contains(d.stdout, "duration      1m5s") {
		t.Errorf("status output:\n%s", d.stdout)
	}
	bad := runCLI(t, "", "status", "dlb-aa", "-execute", ts.URL+"/elsewhere").must(t, 1)
	if !strings.Contains(bad.err, "is "+ts.URL+"/elsewhere the execute function?") {
		t.Errorf("status at a wrong URL: stderr %q", bad.err)
	}
}

// TestDeadLetters runs the local stack and publishes a forged
// proposal.requested (deliberation id "a.*.>") straight to the broker, as
// anyone who reaches it could: generate refuses it before any LLM call, its
// consumer terminates it, and `council dlq` lists it with its reason, shows
// it and replays it (refused and dead-lettered again).
func TestDeadLetters(t *testing.T) {
	ctx := t.Context()
	llm := &counciltest.Completer{}
	s, err := stack.Start(ctx, stack.Config{Completer: llm, StoreDir: t.TempDir(), SweepEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	forged := eventstest.Load(t, "proposal.requested.v1/invalid/wildcard_deliberation_id.json")
	if err := s.Publisher.PublishEvent(ctx, forged); err != nil {
		t.Fatal(err)
	}
	var list result
	if !counciltest.Within(30*time.Second, 100*time.Millisecond, func() bool {
		list = runCLI(t, "", "dlq", "list", "-nats", s.URL).must(t, 0)
		return strings.Contains(list.stdout, forged.ID())
	}) {
		t.Fatalf("the forged event is not in the dead letters after 30s:\n%s", list.stdout)
	}
	for _, want := range []string{"SEQ", "generate", "terminated", "dev.council.proposal.requested.v1", `deliberation id "a.*.>"`} {
		if !strings.Contains(list.stdout, want) {
			t.Errorf("dlq list lacks %q:\n%s", want, list.stdout)
		}
	}
	show := runCLI(t, "", "dlq", "show", "-nats", s.URL, "1").must(t, 0)
	for _, want := range []string{"outcome:    terminated", `"deliberation_id":"a.*.`, "council.events.dev.council.proposal.requested.v1"} {
		if !strings.Contains(show.stdout, want) {
			t.Errorf("dlq show lacks %q:\n%s", want, show.stdout)
		}
	}
	replay := runCLI(t, "", "dlq", "replay", "-nats", s.URL, "1").must(t, 0)
	if !strings.Contains(replay.stdout, "replayed dead letter 1: event "+forged.ID()) {
		t.Errorf("dlq replay said %q", replay.stdout)
	}
	if !counciltest.Within(30*time.Second, 100*time.Millisecond, func() bool {
		return strings.Contains(runCLI(t, "", "dlq", "show", "-nats", s.URL, "2").stdout, forged.ID())
	}) {
		t.Fatal("the replayed event was not refused and dead-lettered again within 30s")
	}
	if n := len(llm.Requests()); n != 0 {
		t.Errorf("%d LLM calls for a forged request, want 0", n)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"dlq"}, "needs a subcommand"},
		{[]string{"dlq", "purge", "-nats", s.URL}, `unknown subcommand "purge"`},
		{[]string{"dlq", "show", "-nats", s.URL}, "takes one dead-letter sequence number"},
		{[]string{"dlq", "show", "-nats", s.URL, "x"}, `"x" is not a sequence number`},
		{[]string{"dlq", "list"}, "-nats URL is required"},
	} {
		if r := runCLI(t, "", tc.args...).must(t, 2); !strings.Contains(r.err, tc.want) {
			t.Errorf("%v: stderr %q lacks %q", tc.args, r.err, tc.want)
		}
	}
	if r := runCLI(t, "", "dlq", "show", "-nats", s.URL, "99").must(t, 1); !strings.Contains(r.err, "not found") {
		t.Errorf("dlq show 99: stderr %q", r.err)
	}
}
