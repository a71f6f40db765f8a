package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/cli/stack"
	"council.dev/events"
	"council.dev/shared/adapters/vllm/vllmtest"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// The LLM-call side of issue 12 on the real LLM server and NATS JetStream:
// the deliberation's deadline reaches every call, an outage of the LLM
// server shorter than the deadline delays deliberations without failing
// them, fallback models answer, a disallowed model is refused at
// acceptance, and a duplicated work event makes no second call.
//
// LLM calls are counted at a pass-through proxy in front of the real
// server (httputil.ReverseProxy): it sees only this test's stack, while
// the server's own counters (/metrics, /slots) count every test that
// shares it.

// callLog is a counting pass-through proxy in front of the real LLM server.
type callLog struct {
	mu    sync.Mutex
	calls []call
	// fail, when set, answers a request for a model with that status
	// instead of passing it on.
	fail map[string]int
}

type call struct {
	at     time.Time
	model  string
	failed bool
}

func newCallLog(t *testing.T, upstream string, fail map[string]int) (*callLog, string) {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	l := &callLog{fail: fail}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: u.Scheme, Host: u.Host})
	proxy.FlushInterval = -1 // token streams pass as they come
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/chat/completions") {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			var req struct {
				Model string `json:"model"`
			}
			_ = json.Unmarshal(body, &req)
			status, failing := l.fail[req.Model]
			l.mu.Lock()
			l.calls = append(l.calls, call{at: time.Now(), model: req.Model, failed: failing})
			l.mu.Unlock()
			if failing {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(status)
				_, _ = fmt.Fprintf(w, `{"error":{"message":"model %s is overloaded (test proxy)","type":"server_error"}}`, req.Model)
				return
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	return l, ts.URL + "/v1"
}

func (l *callLog) snapshot() []call {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]call(nil), l.calls...)
}

func (l *callLog) count() int { return len(l.snapshot()) }

// llmStack starts a stack on the LLM server at llmURL.
func llmStack(t *testing.T, llmURL string, env map[string]string) *stack.Stack {
	t.Helper()
	s, err := stack.Start(context.Background(), stack.Config{
		LLMURL: llmURL, LLMModel: vllmtest.Model(), StoreDir: t.TempDir(),
		LLMTimeout: 2 * time.Minute, SweepEvery: time.Second, Env: env,
	})
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// deliberation returns the 3-agent fixture with a fresh id, edited.
func deliberation(t *testing.T, edit func(data map[string]any)) event.Event {
	t.Helper()
	e := request(t, 48)
	var data map[string]any
	if err := json.Unmarshal(e.Data(), &data); err != nil {
		t.Fatal(err)
	}
	edit(data)
	if err := e.SetData(event.ApplicationJSON, data); err != nil {
		t.Fatal(err)
	}
	return e
}

// endWithin bounds a whole deliberation of the fixture (15 calls with the
// final review by all pairs) on a shared machine, as await does.
const endWithin = 8 * time.Minute

func end(t *testing.T, s *stack.Stack, id string, within time.Duration) stack.Outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	out, err := s.Await(ctx, id)
	if err != nil {
		t.Fatalf("await deliberation %s: %v (stack: %v)", id, err, s.Err())
	}
	return out
}

// TestNoLLMCallAfterTheDeadline: a deliberation whose deadline passes
// mid-run (1 s for 6 agents, 3 rounds of up to 512 tokens) fails on time,
// and the server sees no call begin after the deadline: work in flight is
// cut by its context, work sent later is dropped by generate and critique.
func TestNoLLMCallAfterTheDeadline(t *testing.T) {
	calls, llmURL := newCallLog(t, vllmtest.URL(t), nil)
	s := llmStack(t, llmURL, nil)
	e := deliberation(t, func(d map[string]any) {
		c := d["constraints"].(map[string]any)
		c["timeout_seconds"], c["rounds"], c["max_tokens"], c["max_retries"] = 1, 3, 512, 2
		agents := d["agents"].([]any)
		for i := range 3 {
			agents = append(agents, map[string]any{"id": fmt.Sprintf("extra-%d", i), "role": "DEV"})
		}
		d["agents"] = agents
	})
	id := send(t, s, e)
	out := end(t, s, id, 2*time.Minute)
	if out.Failed == nil {
		t.Fatalf("deliberation %s did not fail on its 1 s deadline: %+v", id, out.Event.Type())
	}
	deadline := out.Failed.StartedAt.Add(time.Second)
	if !strings.Contains(out.Failed.Reason, "deadline") && !strings.Contains(out.Failed.Reason, "timeout") {
		t.Errorf("reason %q does not name the deadline", out.Failed.Reason)
	}
	// Watch the server for a while after the end: retries, resends and
	// late work events must not reach it.
	late := func() []call {
		var out []call
		for _, c := range calls.snapshot() {
			if c.at.After(deadline) {
				out = append(out, c)
			}
		}
		return out
	}
	if counciltest.Within(5*time.Second, 100*time.Millisecond, func() bool { return len(late()) > 0 }) {
		t.Fatalf("%d LLM calls began after the deadline %s, the first at %s", len(late()), deadline.Format(time.RFC3339Nano), late()[0].at.Format(time.RFC3339Nano))
	}
	n := calls.count()
	if n == 0 {
		t.Fatal("no LLM call at all: the test proves nothing")
	}
	dropped := 0
	forEachEvent(t, s, func(e event.Event) {
		if e.Type() != events.TypeProposalFailed && e.Type() != events.TypeCritiqueFailed {
			return
		}
		w, err := events.DecodeWorkFailure(e)
		if err == nil && w.DeliberationID == id && !w.Retryable && strings.Contains(w.Error, "deadline") {
			dropped++
		}
	})
	t.Logf("%d LLM calls, all before the deadline; %d work items failed for good on the deadline", n, dropped)
}

// llmServer is a second instance of the real LLM server (scripts/llm-server.sh
// on a port of its own), which the test may stop and start: the shared
// server on 8088 serves other tests meanwhile.
type llmServer struct {
	t    *testing.T
	port int
}

func startLLMServer(t *testing.T) *llmServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	s := &llmServer{t: t, port: port}
	s.run("start")
	t.Cleanup(func() { s.run("stop") })
	return s
}

func (s *llmServer) url() string { return "http://127.0.0.1:" + strconv.Itoa(s.port) + "/v1" }

func (s *llmServer) run(cmd string) {
	s.t.Helper()
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "scripts", "llm-server.sh")
	c := exec.Command(script, cmd)
	c.Env = append(c.Environ(), "COUNCIL_LLM_PORT="+strconv.Itoa(s.port))
	if out, err := c.CombinedOutput(); err != nil {
		s.t.Fatalf("llm-server.sh %s (port %d): %v\n%s", cmd, s.port, err, out)
	}
}

// TestLLMOutageShorterThanTheDeadline stops the LLM server for 20 s while
// deliberations run (connection refused) and starts it again: every
// deliberation completes, none fails.
func TestLLMOutageShorterThanTheDeadline(t *testing.T) {
	srv := startLLMServer(t)
	s := llmStack(t, srv.url(), nil)
	const n = 3
	ids := make([]string, n)
	for i := range ids {
		ids[i] = send(t, s, deliberation(t, func(d map[string]any) {
			d["constraints"].(map[string]any)["timeout_seconds"] = 240
			d["constraints"].(map[string]any)["max_tokens"] = 32
		}))
	}
	// Mid-run: once the first proposal is in.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	first, err := s.JS.OrderedConsumer(ctx, s.Topology.EventsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{s.Topology.EventSubject(events.TypeProposalGenerated)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.Next(jetstream.FetchMaxWait(2 * time.Minute)); err != nil {
		t.Fatalf("no proposal before the outage: %v", err)
	}
	srv.run("stop")
	down := time.Now()
	ended := ends(t, s, ids)
	// The outage lasts 20 s, watched all along: no deliberation may fail
	// while the server is down (the old client failed them within 4 s).
	outage := time.NewTimer(20 * time.Second)
	watch := time.NewTicker(250 * time.Millisecond)
	for waiting := true; waiting; {
		select {
		case <-outage.C:
			waiting = false
		case <-watch.C:
			if id := failedOf(t, s, ids); id != "" {
				t.Fatalf("deliberation %s failed %s into the outage", id, time.Since(down).Round(time.Millisecond))
			}
		}
	}
	watch.Stop()
	if got := ends(t, s, ids); got >= n {
		t.Fatalf("every deliberation ended before the server came back (%d at the stop): the outage hit nothing in flight", ended)
	}
	srv.run("start")
	t.Logf("LLM server down for %s; %d of %d deliberations had ended when it stopped", time.Since(down).Round(time.Millisecond), ended, n)
	for _, id := range ids {
		out := end(t, s, id, endWithin)
		if out.Completed == nil {
			t.Errorf("deliberation %s: %s (%v), want completed", id, out.Event.Type(), out.Failed)
			continue
		}
		if len(out.Completed.Failures) > 0 {
			t.Errorf("deliberation %s completed with failures %+v", id, out.Completed.Failures)
		}
	}
	t.Logf("all %d completed %s after the server stopped", n, time.Since(down).Round(time.Millisecond))
}

// ends counts the deliberations of ids that have ended.
func ends(t *testing.T, s *stack.Stack, ids []string) int {
	t.Helper()
	n := 0
	for _, id := range ids {
		d, _, err := s.Store.Get(context.Background(), id)
		if err == nil && d.Status.Terminal() {
			n++
		}
	}
	return n
}

// failedOf returns the first of ids whose deliberation has failed, or "".
func failedOf(t *testing.T, s *stack.Stack, ids []string) string {
	t.Helper()
	for _, id := range ids {
		d, _, err := s.Store.Get(context.Background(), id)
		if err == nil && d.Status == council.StatusFailed {
			return id
		}
	}
	return ""
}

// TestFallbackModelAnswers: every agent's model, allowed, fails with 503
// (the proxy answers for it: the real server serves one model under any
// name, so a failing model must fail somewhere); its fallback, the real
// model on the real server, answers, and each proposal and critique says
// so.
func TestFallbackModelAnswers(t *testing.T) {
	calls, llmURL := newCallLog(t, vllmtest.URL(t), map[string]int{"council-down": http.StatusServiceUnavailable})
	s := llmStack(t, llmURL, map[string]string{"COUNCIL_LLM_MODELS": vllmtest.Model() + ",council-down"})
	e := deliberation(t, func(d map[string]any) {
		for _, a := range d["agents"].([]any) {
			a.(map[string]any)["model"] = "council-down"
			a.(map[string]any)["fallback_models"] = []string{vllmtest.Model()}
		}
	})
	id := send(t, s, e)
	out := end(t, s, id, endWithin)
	if out.Completed == nil {
		t.Fatalf("deliberation %s: %s %+v, want completed", id, out.Event.Type(), out.Failed)
	}
	checkCompleted(t, out.Completed, "task-42")
	for _, r := range out.Completed.Ranking {
		if r.Proposal.Model != vllmtest.Model() {
			t.Errorf("proposal of %s answered by %q, want the fallback %q", r.Proposal.AgentID, r.Proposal.Model, vllmtest.Model())
		}
		for _, c := range r.Critiques {
			if c.Model != vllmtest.Model() {
				t.Errorf("critique by %s answered by %q, want the fallback", c.ReviewerID, c.Model)
			}
		}
	}
	down, answered := 0, 0
	for _, c := range calls.snapshot() {
		switch {
		case c.model == "council-down" && c.failed:
			down++
		case c.model == vllmtest.Model():
			answered++
		}
	}
	// 15 calls: 3 proposals, 3 ring critiques, 3 revisions, 6 critiques
	// of the final review by all pairs.
	if down < 15 || answered < 15 {
		t.Errorf("%d calls to council-down, %d to the fallback; want each of the 15 calls tried on both", down, answered)
	}
}

// TestDisallowedModelIsRefusedAtAcceptance: on JetStream the request is
// refused for good (dead letter, with the reason naming the model), and no
// deliberation starts; over HTTP the same error is a 400
// (functions/execute TestModelOutsideTheAllowListIsRefusedAtAcceptance).
func TestDisallowedModelIsRefusedAtAcceptance(t *testing.T) {
	calls, llmURL := newCallLog(t, vllmtest.URL(t), nil)
	s := llmStack(t, llmURL, nil)
	e := deliberation(t, func(d map[string]any) {
		d["agents"].([]any)[2].(map[string]any)["fallback_models"] = []string{"gpt-9"}
	})
	id := send(t, s, e)
	var reason string
	if !counciltest.Within(30*time.Second, 100*time.Millisecond, func() bool {
		reason = deadLetterReason(t, s, e.ID())
		return reason != ""
	}) {
		t.Fatalf("no dead letter for the refused request %s", e.ID())
	}
	if !strings.Contains(reason, `agents[2].fallback_models[0] "gpt-9" is not allowed`) {
		t.Errorf("dead letter reason %q does not name the model", reason)
	}
	if _, _, err := s.Store.Get(context.Background(), id); err == nil {
		t.Error("a deliberation was stored for a refused request")
	}
	if n := calls.count(); n != 0 {
		t.Errorf("%d LLM calls for a refused request", n)
	}
}

// deadLetterReason returns the reason of the dead letter of event id, or "".
func deadLetterReason(t *testing.T, s *stack.Stack, id string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := s.JS.Stream(ctx, s.Topology.DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		if m.Header.Get("Council-Dlq-Event-Id") == id {
			return m.Header.Get("Council-Dlq-Reason")
		}
	}
	return ""
}

// TestDuplicatedWorkEventMakesNoSecondCall: every work event of a
// completed deliberation published again (new message ids, so the
// broker's dedupe does not drop them) reaches generate and critique and
// costs no LLM call: each is answered from its claim.
func TestDuplicatedWorkEventMakesNoSecondCall(t *testing.T) {
	calls, llmURL := newCallLog(t, vllmtest.URL(t), nil)
	s := llmStack(t, llmURL, nil)
	id := send(t, s, request(t, 32))
	out := end(t, s, id, endWithin)
	if out.Completed == nil {
		t.Fatalf("deliberation %s: %s, want completed", id, out.Event.Type())
	}
	before := calls.count()
	var work []event.Event
	forEachEvent(t, s, func(e event.Event) {
		if e.Type() == events.TypeProposalRequested || e.Type() == events.TypeCritiqueRequested {
			work = append(work, e)
		}
	})
	if len(work) == 0 || before < len(work) {
		t.Fatalf("%d work events and %d calls: want a call per work event", len(work), before)
	}
	ctx := context.Background()
	for _, e := range work {
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.JS.Publish(ctx, s.Topology.EventSubject(e.Type()), data, jetstream.WithMsgID(e.ID()+".dup")); err != nil {
			t.Fatal(err)
		}
	}
	// Each duplicate handled: both consumers caught up with nothing pending.
	settled := func() bool {
		for _, name := range []string{"generate", "critique"} {
			c, err := s.JS.Consumer(ctx, s.Topology.EventsStream, name)
			if err != nil {
				return false
			}
			info, err := c.Info(ctx)
			if err != nil || info.NumPending > 0 || info.NumAckPending > 0 {
				return false
			}
		}
		return true
	}
	if !counciltest.Within(time.Minute, 100*time.Millisecond, settled) {
		t.Fatal("generate and critique did not handle the duplicates within a minute")
	}
	if after := calls.count(); after != before {
		t.Fatalf("%d duplicated work events made %d more LLM calls, want none", len(work), after-before)
	}
	t.Logf("%d work events duplicated after the end: %d LLM calls before, none after", len(work), before)
}
