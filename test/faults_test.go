//go:build faults

package test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"council.dev/cli/stack"
	"council.dev/events"
	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// The fault run (make faults; build tag faults): deliberations on the local
// stack against a fault-injecting LLM stub.
const (
	faultDeliberations = 20
	faultLLMRate       = 0.20 // of LLM calls: 500, 429, reset, slow, malformed
	faultDupRate       = 0.30 // of requests and of internal events: delivered twice
	faultBudget        = 3 * time.Minute
)

// syncBuffer collects log lines from many goroutines.
type syncBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (b *syncBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines[max(0, len(b.lines)-n):], "\n")
}

// natsServer is a NATS JetStream server on a fixed loopback port and
// directory, so that it can be stopped and started again under the clients'
// feet.
type natsServer struct {
	t    *testing.T
	port int
	dir  string
	srv  *server.Server
}

func startNATS(t *testing.T) *natsServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	n := &natsServer{t: t, port: port, dir: t.TempDir()}
	n.start()
	t.Cleanup(func() { n.stop() })
	return n
}

func (n *natsServer) start() {
	n.t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: n.port, JetStream: true, StoreDir: n.dir,
		NoLog: true, NoSigs: true})
	if err != nil {
		n.t.Fatalf("nats server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(20 * time.Second) {
		n.t.Fatalf("nats server on port %d did not start", n.port)
	}
	n.srv = srv
}

func (n *natsServer) stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

func (n *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// duplicator delivers a share of the internal events twice: it listens on
// the broker subjects and publishes the chosen events again under another
// Nats-Msg-Id (so the broker's dedupe lets them through), as a redelivery
// or a retried publish would.
type duplicator struct {
	n      atomic.Int64
	mu     sync.Mutex
	rng    *rand.Rand
	nc     *nats.Conn
	errors atomic.Int64
}

var duplicated = map[string]bool{
	events.TypeProposalRequested: true, events.TypeProposalGenerated: true, events.TypeProposalFailed: true,
	events.TypeCritiqueRequested: true, events.TypeCritiqueCompleted: true, events.TypeCritiqueFailed: true,
}

func startDuplicator(t *testing.T, url string, rate float64) *duplicator {
	t.Helper()
	nc, err := nats.Connect(url, nats.Name("fault-duplicator"), nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	d := &duplicator{rng: rand.New(rand.NewPCG(7, 11)), nc: nc}
	prefix := "council.events."
	if _, err := nc.Subscribe(prefix+">", func(m *nats.Msg) {
		typ := strings.TrimPrefix(m.Subject, prefix)
		if !duplicated[typ] || m.Header.Get("Council-Fault-Dup") != "" {
			return
		}
		d.mu.Lock()
		dup := d.rng.Float64() < rate
		d.mu.Unlock()
		if !dup {
			return
		}
		out := &nats.Msg{Subject: m.Subject, Data: m.Data, Header: nats.Header{}}
		out.Header.Set("Content-Type", m.Header.Get("Content-Type"))
		out.Header.Set("Council-Fault-Dup", "1")
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := js.PublishMsg(ctx, out, jetstream.WithMsgID("dup-"+m.Header.Get("Nats-Msg-Id"))); err != nil {
				d.errors.Add(1) // NATS restarting: that duplicate is not sent
				return
			}
			d.n.Add(1)
		}()
	}); err != nil {
		t.Fatal(err)
	}
	return d
}

// terminal reads every deliberation.completed and deliberation.failed
// event of the broker stream: per deliberation, the outcomes.
func terminal(t *testing.T, js jetstream.JetStream) map[string][]stack.Outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := map[string][]stack.Outcome{}
	subjects := []string{"council.events." + events.TypeDeliberationCompleted, "council.events." + events.TypeDeliberationFailed}
	s, err := js.Stream(ctx, "COUNCIL_EVENTS")
	if err != nil {
		t.Fatalf("broker stream: %v", err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter("council.events.dev.council.deliberation.>"))
	if err != nil {
		t.Fatal(err)
	}
	total := uint64(0)
	for subj, n := range info.State.Subjects {
		for _, want := range subjects {
			if subj == want {
				total += n
			}
		}
	}
	if total == 0 {
		return out
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: subjects})
	if err != nil {
		t.Fatal(err)
	}
	for range total {
		m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("read the outcomes: %v", err)
		}
		e, err := events.DecodeStructured(m.Data())
		if err != nil {
			t.Fatalf("outcome that is not a CloudEvent: %v", err)
		}
		switch e.Type() {
		case events.TypeDeliberationCompleted:
			c, err := events.DecodeCompleted(e)
			if err != nil {
				t.Fatalf("deliberation.completed %s does not decode: %v", e.ID(), err)
			}
			out[c.DeliberationID] = append(out[c.DeliberationID], stack.Outcome{Event: e, Completed: &c})
		default:
			f, err := events.DecodeFailed(e)
			if err != nil {
				t.Fatalf("deliberation.failed %s does not decode: %v", e.ID(), err)
			}
			out[f.DeliberationID] = append(out[f.DeliberationID], stack.Outcome{Event: e, Failed: &f})
		}
	}
	return out
}

// faultRequest is the 3-agent, 1-round fixture with event id i.
func faultRequest(t *testing.T, i int) event.Event {
	t.Helper()
	e, err := events.LoadFixture("deliberation.requested.v1/valid/deliberation.json")
	if err != nil {
		t.Fatal(err)
	}
	e.SetID(fmt.Sprintf("fault-run-%02d", i))
	return e
}

// The stack of the fault run runs in a process of its own (this test
// binary, started again with faultStackEnv set), so that it can be killed
// with SIGKILL: no deferred call, no drain, no flush.
const (
	faultStackEnv = "COUNCIL_FAULTS_STACK"
	faultNATSEnv  = "COUNCIL_FAULTS_NATS_URL"
	faultLLMEnv   = "COUNCIL_FAULTS_LLM_URL"
)

func TestMain(m *testing.M) {
	if os.Getenv(faultStackEnv) != "" {
		os.Exit(runFaultStack())
	}
	os.Exit(m.Run())
}

// runFaultStack runs the stack the fault run's process is for, until the
// process is killed; it writes "ready" to its standard output once the
// functions consume.
func runFaultStack() int {
	cfg := stack.Config{
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		LLMURL: os.Getenv(faultLLMEnv), LLMModel: "council-tiny", NATSURL: os.Getenv(faultNATSEnv),
		LLMTimeout: 20 * time.Second, SweepEvery: time.Second, AckWait: 5 * time.Second, Concurrency: 8,
	}
	if _, err := stack.Start(context.Background(), cfg); err != nil {
		fmt.Fprintln(os.Stderr, "fault stack:", err)
		return 1
	}
	fmt.Println("ready")
	select {} // until killed
}

// stackProcess is the stack in a process of its own.
type stackProcess struct{ cmd *exec.Cmd }

// startStackProcess starts the stack's process on NATS at natsURL and the
// LLM at llmURL, its log lines into logs, and waits for it to be ready.
func startStackProcess(t *testing.T, natsURL, llmURL string, logs *syncBuffer) *stackProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), faultStackEnv+"=1", faultNATSEnv+"="+natsURL, faultLLMEnv+"="+llmURL)
	cmd.Stderr = logs
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the stack's process: %v", err)
	}
	p := &stackProcess{cmd: cmd}
	t.Cleanup(p.kill)
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "ready" {
			err = fmt.Errorf("first line %q", line)
		}
		ready <- err
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("the stack's process did not start: %v\n%s", err, logs.tail(20))
		}
	case <-time.After(time.Minute):
		t.Fatalf("the stack's process not ready within a minute:\n%s", logs.tail(20))
	}
	return p
}

// kill kills the process with SIGKILL and reaps it.
func (p *stackProcess) kill() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

// TestFaultsDeliberationsSurviveEverything runs 20 deliberations at once on
// the local stack against the fault-injecting LLM stub (20 % of calls: 500,
// 429, connection reset, slow, malformed), with 30 % of the requests and of
// the internal events delivered twice, restarts the NATS server under the
// running functions, then kills the stack's process with SIGKILL mid-run
// and starts another over the same NATS storage — and expects every
// deliberation to end exactly once: completed, or failed with its reason;
// none lost, none doubled.
func TestFaultsDeliberationsSurviveEverything(t *testing.T) {
	start := time.Now()
	deadline := start.Add(faultBudget)
	llm, llmURL := newFaultyLLM(t, faultLLMRate, 42)
	ns := startNATS(t)
	var logs syncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("stack logs (warnings and errors):\n%s", logs.tail(200))
		}
	})
	ctx := context.Background()
	proc := startStackProcess(t, ns.url(), llmURL, &logs)
	// The test's own client: the stack's process is killed under it.
	nc, err := nats.Connect(ns.url(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	topo := natsjs.DefaultTopology()
	store, err := natsjs.OpenStore(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	dups := startDuplicator(t, ns.url(), faultDupRate)

	// Requests: each once, 30 % twice (the same CloudEvent, another
	// Nats-Msg-Id: a producer's retry the broker cannot recognise).
	ids := map[string]bool{}
	rng := rand.New(rand.NewPCG(3, 5))
	requestDups := 0
	for i := range faultDeliberations {
		e := faultRequest(t, i)
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		copies := 1
		if rng.Float64() < faultDupRate {
			copies, requestDups = 2, requestDups+1
		}
		for c := range copies {
			if _, err := js.Publish(ctx, topo.EventSubject(e.Type()), data,
				jetstream.WithMsgID(fmt.Sprintf("%s/%d", e.ID(), c))); err != nil {
				t.Fatalf("publish request: %v", err)
			}
		}
		ids[council.DeliberationID(e.Source(), e.ID())] = true
	}

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		if !counciltest.Within(time.Until(deadline), 100*time.Millisecond, cond) {
			for _, name := range []string{"execute", "generate", "critique"} {
				if c, err := js.Consumer(ctx, topo.EventsStream, name); err != nil {
					t.Logf("consumer %s: %v", name, err)
				} else if info, err := c.Info(ctx); err == nil {
					t.Logf("consumer %s: pending %d, ack pending %d, waiting pulls %d, redelivered %d",
						name, info.NumPending, info.NumAckPending, info.NumWaiting, info.NumRedelivered)
				}
			}
			for id := range ids {
				d, _, err := store.Get(ctx, id)
				if err != nil {
					t.Logf("%s: %v", id, err)
					continue
				}
				var pending []string
				for k, w := range d.Work {
					if w.State == council.WorkPending {
						pending = append(pending, fmt.Sprintf("%s#%d", k, w.Attempt))
					}
				}
				t.Logf("%s: %s stage %d, outbox %v, pending work %v", id, d.Status, d.Stage, d.Outbox, pending)
			}
			t.Fatalf("%s: not within the budget of %s", what, faultBudget)
		}
	}
	progress := func() (ended int) { return len(terminal(t, js)) }

	// Fault 1: the NATS server stops under the running functions once the
	// deliberations are under way, and comes back on the same storage.
	waitFor("a first proposal", func() bool {
		for id := range ids {
			if d, _, err := store.Get(ctx, id); err == nil && len(d.Proposals) > 0 {
				return true
			}
		}
		return false
	})
	before := progress()
	t.Logf("fault: restarting NATS with %d of %d deliberations ended (%s)", before, faultDeliberations, time.Since(start).Round(time.Millisecond))
	ns.stop()
	ns.start()
	waitFor("progress after the NATS restart", func() bool { return nc.IsConnected() && progress() > before })

	// Fault 2: the stack's process is killed (SIGKILL) mid-run and another
	// started over the same NATS storage.
	ended := progress()
	if ended >= faultDeliberations {
		t.Fatalf("every deliberation ended before the stack was killed: the run proves too little")
	}
	t.Logf("fault: killing the stack's process (SIGKILL) with %d of %d deliberations ended (%s)", ended, faultDeliberations, time.Since(start).Round(time.Millisecond))
	proc.kill()
	if ws, ok := proc.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the stack's process ended with %v, not killed by SIGKILL", proc.cmd.ProcessState)
	}
	startStackProcess(t, ns.url(), llmURL, &logs)

	waitFor("every deliberation ended", func() bool { return progress() >= faultDeliberations })
	// Redeliveries and duplicates still in flight: wait until every
	// function's consumer has nothing pending, so that an outcome sent
	// twice would show.
	waitFor("the consumers to settle", func() bool {
		for _, name := range []string{"execute", "generate", "critique"} {
			c, err := js.Consumer(ctx, topo.EventsStream, name)
			if err != nil {
				return false
			}
			info, err := c.Info(ctx)
			if err != nil || info.NumPending > 0 || info.NumAckPending > 0 {
				return false
			}
		}
		return true
	})

	outcomes := terminal(t, js)
	completed, failed := 0, 0
	for id := range ids {
		got := outcomes[id]
		switch {
		case len(got) == 0:
			t.Errorf("deliberation %s lost: no outcome", id)
		case len(got) > 1:
			t.Errorf("deliberation %s doubled: %d outcomes", id, len(got))
		case got[0].Failed != nil:
			failed++
			if failed == 1 {
				t.Logf("a failed deliberation's reason: %s", got[0].Failed.Reason)
			}
			if strings.TrimSpace(got[0].Failed.Reason) == "" {
				t.Errorf("deliberation %s failed without a reason", id)
			}
		default:
			completed++
			if len(got[0].Completed.Ranking) == 0 {
				t.Errorf("deliberation %s completed without a ranking", id)
			}
		}
	}
	for id := range outcomes {
		if !ids[id] {
			t.Errorf("outcome for deliberation %s, which nobody requested", id)
		}
	}
	calls, injected := llm.counts()
	t.Logf("fault run: %d deliberations, %d completed, %d failed, in %s", faultDeliberations, completed, failed, time.Since(start).Round(time.Millisecond))
	t.Logf("fault run: %d LLM calls, %d answered well, faults injected %v; %d requests sent twice, %d internal events duplicated (%d duplicates lost to the NATS restart)",
		calls, llm.ok.Load(), injected, requestDups, dups.n.Load(), dups.errors.Load())
	for _, k := range faultKinds {
		if injected[k] == 0 {
			t.Errorf("no %s fault was injected: the run proves less than it says", k)
		}
	}
	if dups.n.Load() == 0 || requestDups == 0 {
		t.Errorf("nothing was duplicated (requests %d, internal events %d)", requestDups, dups.n.Load())
	}
}
